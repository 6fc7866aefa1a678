"""One policy for every request under /api/: the relay's routes and the composed endpoints pass the
same ``Gateway.admit``, applied at the edge before any handler runs."""

import uuid

import pytest
from litestar.testing import TestClient

from flotilla_kit.testing.redis import start_redis
from gateway.app import create_app
from gateway.settings import GatewaySettings


@pytest.fixture
def client(public_key_file):
    server = start_redis()
    settings = GatewaySettings(
        service_name="gateway",
        redis_url=server.url,
        jwt_public_key_file=str(public_key_file),
        # Three requests a minute: what the fourth gets shows which requests cost a permit.
        rate_limits="default=3/60,burst=3;strict=5/1",
        max_request_body_bytes=1000,
    )
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        server.close()


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def test_the_storefront_is_rate_limited_by_the_edge_policy(client):
    path = f"/api/storefront/products/{uuid.uuid4()}"
    # Nothing serves the catalog here: an admitted request gets 503 from the storefront itself.
    assert [client.get(path).status_code for _ in range(3)] == [503, 503, 503]
    limited = client.get(path)
    assert _problem(limited, 429)["detail"].startswith("rate limit of class 'default' exceeded")
    assert int(limited.headers["retry-after"]) >= 1


def test_paths_litestar_would_route_to_a_composed_endpoint_pass_the_policy_too(client):
    product = uuid.uuid4()
    paths = [f"//api/storefront/products/{product}", f"/api//storefront/products/{product}/", "/api/storefront/x"]
    for path in paths:
        answer = client.get(f"{client.base_url}{path}")  # a full URL: "//api/..." alone would name a host
        assert answer.request.url.path == path
    _problem(client.get(f"/api/storefront/products/{product}"), 429)


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "OPTIONS"])
def test_a_body_on_a_method_that_takes_none_is_413_before_it_costs_a_permit(client, method):
    storefront = f"/api/storefront/products/{uuid.uuid4()}"
    for path in [storefront, "/api/catalog/products"]:
        for body in [b"{}", iter([b"{", b"}"])]:  # with a Content-Length, then chunked
            refused = client.request(method, path, content=body)
            assert refused.status_code == (413 if path == storefront or method in ("GET", "HEAD") else 405)
            if method != "HEAD":
                _problem(refused, refused.status_code)
    assert [client.get(storefront).status_code for _ in range(3)] == [503, 503, 503]  # all three permits left


def test_a_get_with_an_empty_body_is_accepted(client):
    answer = client.request("GET", f"/api/storefront/products/{uuid.uuid4()}", headers={"content-length": "0"})
    assert answer.status_code == 503


def test_a_body_over_the_limit_is_413_before_it_costs_a_permit(client):
    for _ in range(5):
        _problem(client.post("/api/catalog/products", content=b"x" * 2000), 413)
    _problem(client.post("/api/catalog/products", content=b"{}"), 401)  # admitted as far as the token
