"""The catalog, served for real, fuzzed from its own OpenAPI document: every answer is one the document lists.

Status codes, content types and bodies are checked against the document (not only "no 5xx"), as
an anonymous caller and as an admin (the identity headers the gateway sets).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from catalog.tests.conftest import ADMIN
from flotilla_kit.testing.openapi_fuzz import fuzz_every_operation, load_document
from flotilla_kit.testing.processes import ServiceProcess, running_service

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, redis_server) -> Iterator[ServiceProcess]:
    with running_service("catalog", redis_url=redis_server.url, data_dir=tmp_path_factory.mktemp("catalog")) as process:
        yield process


@pytest.fixture(scope="module")
def document(catalog):
    return load_document(f"{catalog.base_url}/schema/openapi.json")


def test_the_document_has_every_operation(document):
    """Guards the fuzzing below against passing vacuously on a document that lost operations."""
    labels = {result.ok().label for result in document.get_all_operations()}
    assert labels == {
        "GET /products",
        "POST /products",
        "GET /products/{product_id}",
        "PATCH /products/{product_id}",
        "GET /products/by-sku/{sku}",
        "POST /products/{product_id}/deactivate",
    }


@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_generated_requests_get_only_answers_the_document_lists(catalog, document, caller, subtests):
    headers = ADMIN if caller == "admin" else {}
    fuzz_every_operation(document, base_url=catalog.base_url, headers=headers, subtests=subtests)
