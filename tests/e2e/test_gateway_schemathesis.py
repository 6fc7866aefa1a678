"""The gateway's public API fuzzed from its own merged OpenAPI document (schemathesis).

The document is read from the running gateway (``GET /openapi.json``). For every operation in it,
schemathesis generates requests, schema-valid and schema-violating alike, and sends them over
HTTP: once anonymously and once with an admin token. Every answer must be one the document lists:
its status, its content type and its body (``flotilla_kit.testing.openapi_fuzz``), whether the
gateway answered it (auth, rate limits, routing) or a service did.
"""

from __future__ import annotations

import pytest

from flotilla_kit.testing.openapi_fuzz import fuzz_every_operation, load_document

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
# What the gateway adds to each routed operation, by the route that serves it (see conftest.ROUTES):
# 400 and 5xx on every one, 401 too (a public route refuses a bad token), 403 where a role is
# needed, 429 on every route (each has a rate class), 404 where a path parameter can name nothing,
# 413 on every one (over the size limit, or any body on a method that takes none). The services'
# own statuses come on top.
EDGE = {"400", "401", "413", "429", "502", "503", "504"}
GATEWAY_STATUSES = {
    ("get", "/api/catalog/products"): EDGE,
    ("post", "/api/catalog/products"): EDGE | {"403"},
    ("get", "/api/catalog/products/{product_id}"): EDGE | {"404"},
    ("patch", "/api/catalog/products/{product_id}"): EDGE | {"403", "404"},
    ("get", "/api/storefront/products/{product_id}"): EDGE | {"404"},
}


@pytest.fixture(scope="module")
def gateway_document(shop):
    return load_document(f"{shop.url}/openapi.json")


def test_the_merged_document_has_every_routed_operation(gateway_document):
    """Guards the fuzzing below against passing vacuously on a document that lost a service."""
    assert "x-unavailable-services" not in gateway_document.raw_schema["info"]
    labels = {result.ok().label for result in gateway_document.get_all_operations()}
    assert {
        "GET /api/catalog/products",
        "POST /api/catalog/products",
        "GET /api/catalog/products/{product_id}",
        "PATCH /api/catalog/products/{product_id}",
        "GET /api/storefront/products/{product_id}",
    } <= labels


def test_routed_operations_document_what_the_gateway_answers_with_one_problem_schema(gateway_document):
    raw = gateway_document.raw_schema
    schemas = raw["components"]["schemas"]
    assert "ProblemDetails" in schemas and not any(name.endswith("_ProblemDetails") for name in schemas)
    for (method, path), statuses in GATEWAY_STATUSES.items():
        responses = raw["paths"][path][method]["responses"]
        assert statuses <= set(responses), (method, path, sorted(statuses - set(responses)))
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (method, path, status)
    # The catalog's own problems come through, described by the one schema too.
    assert {"409", "415", "422"} <= set(raw["paths"]["/api/catalog/products"]["post"]["responses"])
    assert "Retry-After" in raw["paths"]["/api/catalog/products"]["get"]["responses"]["429"]["headers"]
    assert raw["paths"]["/api/catalog/products"]["post"]["security"] == [{"bearer": []}]


@pytest.mark.parametrize("caller", ["anonymous", "admin"])
def test_generated_requests_get_only_answers_the_document_lists(shop, gateway_document, caller, subtests):
    headers = {"authorization": f"Bearer {shop.token('admin', sub='fuzzer')}"} if caller == "admin" else {}
    fuzz_every_operation(gateway_document, base_url=shop.url, headers=headers, subtests=subtests)
