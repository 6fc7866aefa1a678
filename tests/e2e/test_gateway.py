"""The gateway in front of two catalog instances, all real processes found through Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from e2e.support import create_product, problem

from flotilla_kit.testing.waiting import eventually

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_reads_are_public_and_writes_need_an_admin_token(shop):
    with httpx.Client(base_url=shop.url) as http:
        body = {"sku": f"tea-{uuid.uuid4().hex[:6]}", "name": "Tea", "price": {"amount": 450, "currency": "EUR"}}
        problem(http.post("/api/catalog/products", json=body), 401)
        problem(http.post("/api/catalog/products", json=body, headers={"authorization": f"Bearer {shop.token()}"}), 403)
        spoofed = {"authorization": f"Bearer {shop.token()}", "x-caller-id": "root", "x-caller-roles": "admin"}
        problem(http.post("/api/catalog/products", json=body, headers=spoofed), 403)
        problem(
            http.post("/api/catalog/products", json=body, headers={"x-caller-id": "root", "x-caller-roles": "admin"}),
            401,
        )
        created = http.post(
            "/api/catalog/products", json=body, headers={"authorization": f"Bearer {shop.token('admin')}"}
        )
        assert created.status_code == 201, created.text
        product = created.json()
        fetched = http.get(f"/api/catalog/products/{product['id']}")
        assert fetched.status_code == 200 and fetched.json() == product
        assert fetched.headers["x-request-id"]
        assert "x-caller-id" not in fetched.headers


@pytest.mark.parametrize(
    "claims, reason",
    [
        ({"exp": int(time.time()) - 3600}, "token expired"),
        ({"aud": "another-app"}, "not meant for this audience"),
        (None, "malformed token"),
    ],
)
def test_unacceptable_tokens_are_401_problems(shop, claims, reason):
    token = "not-a-jwt" if claims is None else shop.token("admin", **claims)
    with httpx.Client(base_url=shop.url) as http:
        response = http.post("/api/catalog/products", json={}, headers={"authorization": f"Bearer {token}"})
    assert reason in problem(response, 401)["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer error=")


def test_a_token_signed_by_another_key_is_a_401_problem(shop):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ed25519

    forged = jwt.encode(
        {"sub": "x", "aud": "flotilla", "exp": int(time.time()) + 60, "roles": ["admin"]},
        ed25519.Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
    )
    with httpx.Client(base_url=shop.url) as http:
        response = http.post("/api/catalog/products", json={}, headers={"authorization": f"Bearer {forged}"})
    assert "signature is invalid" in problem(response, 401)["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/catalog/metrics",
        "/api/catalog/healthz",
        "/api/catalog/info",
        "/api/catalog/schema/openapi.json",
        "/api/nothing/here",
    ],
)
def test_internal_and_unrouted_paths_are_404(shop, path):
    with httpx.Client(base_url=shop.url) as http:
        problem(http.get(path), 404)


def test_an_unrouted_method_is_405_with_allow(shop):
    with httpx.Client(base_url=shop.url) as http:
        response = http.delete(f"/api/catalog/products/{uuid.uuid4()}")
    problem(response, 405)
    assert response.headers["allow"] == "GET, PATCH, POST"


def test_an_oversized_body_is_413(shop):
    with httpx.Client(base_url=shop.url) as http:
        response = http.post(
            "/api/catalog/products", content=b"x" * 200_000, headers={"authorization": f"Bearer {shop.token('admin')}"}
        )
    problem(response, 413)


def test_the_rate_limit_is_exact_under_concurrent_requests(shop):
    token = shop.token(sub=f"limited-{uuid.uuid4().hex}")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=shop.url, timeout=30) as http:
            return await asyncio.gather(
                *(http.get("/api/limited", headers={"authorization": f"Bearer {token}"}) for _ in range(30))
            )

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert problem(limited, 429)["type"].endswith("/too-many-requests")


def test_the_storefront_answers_with_availability_unknown_when_inventory_is_down(shop):
    with httpx.Client(base_url=shop.url) as http:
        body = {"sku": f"mug-{uuid.uuid4().hex[:6]}", "name": "Mug", "price": {"amount": 900, "currency": "EUR"}}
        product = http.post(
            "/api/catalog/products", json=body, headers={"authorization": f"Bearer {shop.token('admin')}"}
        ).json()
        answer = http.get(f"/api/storefront/products/{product['id']}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"product": product, "availability": {"status": "unknown", "available": None}}
        problem(http.get(f"/api/storefront/products/{uuid.uuid4()}"), 404)


def test_the_merged_openapi_document_covers_routed_services(shop):
    with httpx.Client(base_url=shop.url) as http:
        document = http.get("/openapi.json").json()
    paths = document["paths"]
    assert "/api/catalog/products/{product_id}" in paths
    assert "/api/storefront/products/{product_id}" in paths
    assert not any("metrics" in path or "healthz" in path for path in paths)
    assert paths["/api/catalog/products"]["post"]["security"] == [{"bearer": []}]
    assert "catalog_Product" in document["components"]["schemas"]


def test_a_large_answer_is_relayed_whole(shop):
    """Above the gateway's buffering limit the answer streams through; it must arrive intact."""
    admin = {"authorization": f"Bearer {shop.token('admin')}"}
    prefix = f"big-{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        for i in range(70):
            body = {
                "sku": f"{prefix}-{i:02d}",
                "name": "Big",
                "description": "d" * 5000,
                "price": {"amount": 1, "currency": "EUR"},
            }
            assert http.post("/api/catalog/products", json=body, headers=admin).status_code == 201
        through = http.get("/api/catalog/products", params={"q": prefix, "limit": 70})
    direct = httpx.get(f"{shop.catalogs['catalog-a'].base_url}/products", params={"q": prefix, "limit": 70})
    assert len(direct.content) > 256 * 1024
    assert through.status_code == 200
    assert through.json() == direct.json()


def test_instances_dying_and_returning(shop):
    """One instance killed: reads keep succeeding. Both: 503 fast, circuit open. One back: recovery."""
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        product = create_product(http, shop.token("admin"), "pot")
        path = f"/api/catalog/products/{product['id']}"

        shop.catalogs["catalog-a"].stop(signal.SIGKILL)
        assert [http.get(path).status_code for _ in range(40)] == [200] * 40

        shop.catalogs["catalog-b"].stop(signal.SIGKILL)
        started = time.monotonic()
        first = http.get(path)
        assert problem(first, 503)
        assert time.monotonic() - started < 10  # answers, does not hang (the upstream timeout is 3 s)
        for _ in range(10):
            problem(http.get(path), 503)
        metrics = http.get("/metrics").text
        assert (
            'flotilla_http_client_breaker_transitions_total{from_state="closed",service="catalog",to_state="open"}'
            in metrics
        )

        shop.start_catalog("catalog-b")

        async def recovered() -> bool:
            return http.get(path).status_code == 200

        asyncio.run(eventually(recovered, timeout=60, interval=0.2, what="reads succeed again"))


@pytest.mark.parametrize(
    "path, detail",
    [
        ("/api/catalog/products/by-sku/%20", "no product with SKU ''"),
        ("/api/catalog/products/by-sku/a%3Fb", "no product with SKU 'A?B'"),
        ("/api/catalog/products/by-sku/a%2523b", "no product with SKU 'A%23B'"),
    ],
)
def test_encoded_paths_reach_the_service_as_the_caller_encoded_them(shop, path, detail):
    with httpx.Client(base_url=shop.url) as http:
        answer = problem(http.get(path), 404)
    assert answer["detail"] == detail
    assert answer["instance"] == path  # the caller's path, not the service's


def test_dot_segments_do_not_reach_internal_endpoints(shop):
    with httpx.Client(base_url=shop.url) as http:
        problem(http.get("/api/catalog/products/..%2Fmetrics"), 404)


def test_head_answers_with_the_headers_a_get_would_have_and_no_body(shop):
    with httpx.Client(base_url=shop.url) as http:
        product = create_product(http, shop.token("admin"), "mug")
        path = f"/api/catalog/products/{product['id']}"
        got, head = http.get(path), http.head(path)
    assert got.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))
    assert head.headers["content-type"] == got.headers["content-type"]


def test_a_request_body_of_unknown_length_is_streamed_to_the_service_and_held_to_the_limit(shop):
    admin = {"authorization": f"Bearer {shop.token('admin')}"}
    document = json.dumps(
        {"sku": f"jar-{uuid.uuid4().hex[:6]}", "name": "Jar", "price": {"amount": 3, "currency": "EUR"}}
    ).encode()

    def chunked(data: bytes, size: int) -> Iterator[bytes]:  # no length up front: chunked encoding
        yield from (data[i : i + size] for i in range(0, len(data), size))

    with httpx.Client(base_url=shop.url) as http:
        created = http.post(
            "/api/catalog/products",
            content=chunked(document, 7),
            headers={**admin, "content-type": "application/json"},
        )
        assert created.status_code == 201, created.text
        oversized = http.post(
            "/api/catalog/products",
            content=chunked(b" " * 150_000 + document, 16_384),
            headers={**admin, "content-type": "application/json"},
        )
    problem(oversized, 413)
