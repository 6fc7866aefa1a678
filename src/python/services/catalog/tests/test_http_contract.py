"""What the catalog promises callers besides its bodies: the media types it takes, the methods each
path accepts, and every problem status each operation documents."""

import gzip
import json
import uuid

import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from catalog.tests.conftest import ADMIN
from flotilla_kit.testing.postgres import start_postgres

SOME_ID = "0b5f1c4e-8d7e-4a59-9c43-2f0a6c1d7e11"
NEW_PRODUCT = {"sku": "TEA-1", "name": "Green tea", "price": {"amount": 450, "currency": "EUR"}}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_that_is_not_json_is_a_415_problem_that_says_what_is_accepted(client, content_type):
    # A body that would parse as JSON: the declared type, not the bytes, is what is refused.
    response = client.post(
        "/products", content=json.dumps(NEW_PRODUCT), headers={**ADMIN, "content-type": content_type}
    )
    assert _problem(response, 415)["type"].endswith("/unsupported-media-type")
    assert response.headers["accept"] == "application/json"
    _problem(client.get("/products/by-sku/TEA-1"), 404)  # nothing was created


def test_a_patch_that_is_not_json_is_a_415_problem(client, create):
    product = create("TEA-1")
    headers = {**ADMIN, "content-type": "text/plain"}
    _problem(client.patch(f"/products/{product['id']}", content=b'{"name": "Other"}', headers=headers), 415)
    assert client.get(f"/products/{product['id']}").json()["name"] == "Green tea"


def test_a_compressed_body_is_a_415_problem_that_asks_for_identity(client):
    headers = {**ADMIN, "content-type": "application/json", "content-encoding": "gzip"}
    response = client.post("/products", content=gzip.compress(json.dumps(NEW_PRODUCT).encode()), headers=headers)
    _problem(response, 415)
    assert response.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON", None]
)
def test_json_bodies_are_taken_with_or_without_a_declared_type(client, content_type):
    # Without a Content-Type the body is read as JSON, the one type the operation takes (RFC 9110 8.3).
    headers = {**ADMIN, **({"content-type": content_type} if content_type else {})}
    assert client.post("/products", content=json.dumps(NEW_PRODUCT), headers=headers).status_code == 201


def test_a_json_body_in_another_charset_is_a_415_problem(client):
    headers = {**ADMIN, "content-type": "application/json; charset=latin-1"}
    _problem(client.post("/products", content=json.dumps(NEW_PRODUCT), headers=headers), 415)


ALLOWED = {
    "/products": "GET, HEAD, OPTIONS, POST",
    f"/products/{SOME_ID}": "GET, HEAD, OPTIONS, PATCH",
    "/products/by-sku/TEA-1": "GET, HEAD, OPTIONS",
    f"/products/{SOME_ID}/deactivate": "OPTIONS, POST",
    "/healthz": "GET, HEAD, OPTIONS",
}


@pytest.mark.parametrize("path, allow", ALLOWED.items())
def test_options_lists_the_methods_the_path_accepts(client, path, allow):
    response = client.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow


@pytest.mark.parametrize("path, allow", ALLOWED.items())
def test_a_405_lists_the_same_methods_as_options(client, path, allow):
    response = client.delete(path)
    _problem(response, 405)
    assert response.headers["allow"] == allow


@pytest.mark.parametrize("path, allow", ALLOWED.items())
def test_the_methods_listed_are_the_ones_answered(client, path, allow):
    listed = set(allow.split(", "))
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        answered = client.request(method, path, headers=ADMIN).status_code != 405
        assert answered == (method in listed), method


# Every status each operation can answer. 400: a parameter or body the schema refuses (and any
# malformed request); 404 on a path parameter: a path that names nothing; 413/415: bodies;
# 401/403: the admin guard; 409/422: the catalog's own rules; 503: its database is unreachable.
DOCUMENTED = {
    ("get", "/products"): {"200", "400", "503"},
    ("post", "/products"): {"201", "400", "401", "403", "409", "413", "415", "422", "503"},
    ("get", "/products/{product_id}"): {"200", "400", "404", "503"},
    ("patch", "/products/{product_id}"): {"200", "400", "401", "403", "404", "413", "415", "422", "503"},
    ("get", "/products/by-sku/{sku}"): {"200", "400", "404", "503"},
    ("post", "/products/{product_id}/deactivate"): {"200", "400", "401", "403", "404", "503"},
}


def test_every_operation_documents_each_problem_it_can_answer_with_the_one_problem_schema(client):
    document = client.get("/schema/openapi.json").json()
    operations = {
        (method, path): operation for path, item in document["paths"].items() for method, operation in item.items()
    }
    assert set(operations) == set(DOCUMENTED)
    for key, operation in operations.items():
        responses = operation["responses"]
        assert set(responses) == DOCUMENTED[key], key
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"] == PROBLEM, (key, status)
                assert response["description"], (key, status)
    schema = document["components"]["schemas"]["ProblemDetails"]
    assert set(schema["required"]) == {"type", "title", "status"}


def test_documented_problems_match_what_is_answered(client, create):
    """A spot check of the document against real answers; the fuzzing in test_schemathesis.py does the rest."""
    document = client.get("/schema/openapi.json").json()
    answers = {
        ("post", "/products", "409"): client.post(
            "/products", json={**NEW_PRODUCT, "sku": create("TEA-2")["sku"]}, headers=ADMIN
        ),
        ("get", "/products/{product_id}", "404"): client.get(f"/products/{uuid.uuid4()}"),
        ("post", "/products", "415"): client.post(
            "/products", content=b"{}", headers={**ADMIN, "content-type": "text/plain"}
        ),
    }
    for (method, path, status), response in answers.items():
        assert str(response.status_code) == status
        documented = document["paths"][path][method]["responses"][status]["content"]
        assert response.headers["content-type"].split(";")[0] in documented


def test_a_database_that_cannot_be_reached_is_a_503_problem_as_documented(tmp_path, redis_server):
    """The 503 every operation documents: the database went away (its own server, stopped here)."""
    server = start_postgres()
    try:
        settings = CatalogSettings(
            service_name="catalog", database_url=server.create_database("catalog"), redis_url=redis_server.url
        )
        with TestClient(create_app(settings)) as client:
            created = client.post("/products", json=NEW_PRODUCT, headers=ADMIN).json()
            documented = client.get("/schema/openapi.json").json()["paths"]
            server.stop()
            # The pooled connection breaks first, then new ones are refused: both are the same 503.
            for response in (
                client.get(f"/products/{created['id']}"),
                client.get("/products"),
                client.get("/products"),
            ):
                assert _problem(response, 503)["type"].endswith("/dependency-unavailable")
                assert response.headers["retry-after"]
            assert all("503" in item[method]["responses"] for item in documented.values() for method in item)
    finally:
        server.stop()
