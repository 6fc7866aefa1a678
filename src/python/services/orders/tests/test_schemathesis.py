"""Orders, served for real, fuzzed from its own OpenAPI document: every answer is one the document lists.

Status codes, content types and bodies are checked against the document (not only "no 5xx"), as
an anonymous caller and as a customer (the identity headers the gateway sets).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from flotilla_kit.testing.openapi_fuzz import fuzz_every_operation, load_document
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from orders.tests.conftest import customer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def orders(catalog, redis_server, tmp_path_factory) -> Iterator[ServiceProcess]:
    port = free_port()
    env = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('orders')}/orders.db",
        "REDIS_URL": redis_server.url,
        "DISCOVERY": "static",
        "SERVICE_URLS": f"catalog={catalog.base_url}",
    }
    process = ServiceProcess([sys.executable, "-m", "orders", "serve", "--port", str(port)], port=port, env=env)
    try:
        process.wait_ready(timeout=60)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def document(orders):
    return load_document(f"{orders.base_url}/schema/openapi.json")


def test_the_document_has_every_operation(document):
    """Guards the fuzzing below against passing vacuously on a document that lost operations."""
    labels = {result.ok().label for result in document.get_all_operations()}
    assert labels == {"GET /orders", "POST /orders", "GET /orders/{order_id}"}


@pytest.mark.parametrize("caller", ["anonymous", "customer"])
def test_generated_requests_get_only_answers_the_document_lists(orders, document, caller, subtests):
    headers = customer() if caller == "customer" else {}
    fuzz_every_operation(document, base_url=orders.base_url, headers=headers, subtests=subtests)
