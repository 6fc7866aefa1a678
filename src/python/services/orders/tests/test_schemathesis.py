"""Orders, served for real, fuzzed from its own OpenAPI document: every answer is one the document lists.

Status codes, content types and bodies are checked against the document (not only "no 5xx"), as
an anonymous caller and as a customer (the identity headers the gateway sets).
"""

from __future__ import annotations

import pytest

from flotilla_kit.testing.openapi_fuzz import fuzz_every_operation, load_document
from orders.tests.conftest import customer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def document(orders_service):
    return load_document(f"{orders_service.base_url}/schema/openapi.json")


def test_the_document_has_every_operation(document):
    """Guards the fuzzing below against passing vacuously on a document that lost operations."""
    labels = {result.ok().label for result in document.get_all_operations()}
    assert labels == {
        "GET /orders",
        "POST /orders",
        "GET /orders/{order_id}",
        "GET /orders/sagas",
        "GET /orders/sagas/counts",
    }


@pytest.mark.parametrize("caller", ["anonymous", "customer"])
def test_generated_requests_get_only_answers_the_document_lists(orders_service, document, caller, subtests):
    headers = customer() if caller == "customer" else {}
    fuzz_every_operation(document, base_url=orders_service.base_url, headers=headers, subtests=subtests)
