"""The inventory, served for real, fuzzed from its own OpenAPI document: every answer is one the document lists.

Status codes, content types and bodies are checked against the document (not only "no 5xx"), as
an anonymous caller and as an admin (the identity headers the gateway sets).
"""

from __future__ import annotations

import pytest

from flotilla_kit.testing.openapi_fuzz import fuzz_every_operation, load_document
from inventory.tests.conftest import ADMIN

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def document(inventory):
    return load_document(f"{inventory.base_url}/schema/openapi.json")


def test_the_document_has_every_operation(document):
    """Guards the fuzzing below against passing vacuously on a document that lost operations."""
    labels = {result.ok().label for result in document.get_all_operations()}
    assert labels == {
        "GET /stock/{product_id}",
        "PUT /stock/{product_id}",
        "POST /stock/{product_id}/adjustments",
        "GET /stock/{product_id}/movements",
        "GET /reservations/{order_id}",
    }


@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_generated_requests_get_only_answers_the_document_lists(inventory, document, caller, subtests):
    headers = ADMIN if caller == "admin" else {}
    fuzz_every_operation(document, base_url=inventory.base_url, headers=headers, subtests=subtests)
