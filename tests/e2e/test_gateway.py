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
from e2e.support import create_product, problem, send_and_leave, send_raw

from flotilla_kit.testing.waiting import eventually
from prometheus_client.parser import text_string_to_metric_families

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
    # The edge refuses a body on a GET whatever the service says: documented there too.
    for path in ["/api/catalog/products/{product_id}", "/api/storefront/products/{product_id}"]:
        assert "does not take" in paths[path]["get"]["responses"]["413"]["description"]
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
        metrics = httpx.get(f"{shop.gateway_internal_url}/metrics").text
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


def _smuggled_creation(sku: str) -> str:
    """A subject that, written unchecked into the upstream request's headers, ends it and starts a second one."""
    body = json.dumps({"sku": sku, "name": "Smuggled", "price": {"amount": 1, "currency": "EUR"}})
    return (
        "u1\r\ncontent-length: 0\r\n\r\n"
        "POST /products HTTP/1.1\r\nhost: catalog\r\nx-caller-id: root\r\nx-caller-roles: admin\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n{body}"
    )


@pytest.mark.parametrize("case", ["roles header", "smuggled request", "roles claim", "not latin-1"])
def test_a_token_whose_identity_could_inject_headers_is_401_and_nothing_reaches_the_catalog(shop, case):
    sku = f"SMUGGLED-{uuid.uuid4().hex[:8]}".upper()
    token = {
        "roles header": lambda: shop.token(sub="u1\r\nx-caller-roles: admin"),
        "smuggled request": lambda: shop.token(sub=_smuggled_creation(sku)),
        "roles claim": lambda: shop.token("user\r\nx-caller-roles: admin"),
        "not latin-1": lambda: shop.token(sub="u\u20ac1"),
    }[case]()
    with httpx.Client(base_url=shop.url) as http:
        read = http.get(f"/api/catalog/products/by-sku/{sku}", headers={"authorization": f"Bearer {token}"})
        write = http.post(
            "/api/catalog/products",
            json={"sku": sku, "name": "Injected", "price": {"amount": 1, "currency": "EUR"}},
            headers={"authorization": f"Bearer {token}"},
        )
    for response in (read, write):
        assert "not a safe identifier" in problem(response, 401)["detail"]
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    catalog = next(c for c in shop.catalogs.values() if c.process.poll() is None)  # instances share one database
    direct = httpx.get(f"{catalog.base_url}/products/by-sku/{sku}")
    assert direct.status_code == 404, direct.text  # no product was created by a smuggled request


def test_bodies_on_get_are_refused_at_the_edge_and_never_open_the_breaker(shop):
    """Anonymous GETs with bodies once tripped the catalog's breaker for everyone; now they end at the edge."""

    def chunked(size: int) -> Iterator[bytes]:  # no length up front: chunked encoding
        yield from (b"x" * 16_384 for _ in range(size // 16_384))

    with httpx.Client(base_url=shop.url, timeout=30) as http:
        product = create_product(http, shop.token("admin"), "kettle")
        path = f"/api/catalog/products/{product['id']}"
        for i in range(30):
            content: bytes | Iterator[bytes] = (
                chunked(700_000) if i % 3 == 0 else b"x" * (1_000_000 if i % 3 == 1 else 60_000)
            )
            assert (
                "takes no body" in problem(http.request("GET", "/api/catalog/products", content=content), 413)["detail"]
            )
        assert http.get(path).status_code == 200
        assert http.get("/api/catalog/products").status_code == 200


def test_a_body_on_get_costs_no_rate_limit_permit(shop):
    token = {"authorization": f"Bearer {shop.token(sub=f'bodies-{uuid.uuid4().hex}')}"}
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        for _ in range(15):
            problem(http.request("GET", "/api/limited", content=b"{}", headers=token), 413)
        problem(http.request("DELETE", "/api/catalog/products/x", content=b"{}"), 405)  # unrouted: no body check
        assert [http.get("/api/limited", headers=token).status_code for _ in range(10)] == [200] * 10


ENCODED_SLASHES = [
    "/api/catalog/%2fmetrics",
    "/api/catalog/%2Fmetrics",
    "/api/catalog/%2f%2fmetrics",
    "/api/catalog/%2finfo",
    "/api/catalog/%2fhealthz",
    "/api/catalog/%2freadyz",
    "/api/catalog/%2fschema/openapi.json",
    "/api/catalog//metrics",
    "/api/catalog/%2f/metrics",
    "/api/catalog/products/%2f..%2fmetrics",
]


@pytest.mark.parametrize("path", ENCODED_SLASHES)
def test_encoded_slashes_do_not_reach_internal_endpoints(shop, path):
    answer = send_raw(shop.url, f"GET {path} HTTP/1.1")
    assert answer.status == 404, answer
    assert json.loads(answer.body)["type"].endswith("/not-found")


def test_an_absolute_form_target_is_routed_as_its_path(shop):
    with httpx.Client(base_url=shop.url) as http:
        product = create_product(http, shop.token("admin"), "cup")
    path = f"/api/catalog/products/{product['id']}"
    read = send_raw(shop.url, f"GET http://evil.example{path} HTTP/1.1")
    assert read.status == 200 and json.loads(read.body) == product
    for target in ["/api/catalog/%2fmetrics", "/api/catalog/metrics", "//api/catalog/%2fhealthz"]:
        assert send_raw(shop.url, f"GET http://evil.example{target} HTTP/1.1").status == 404, target
    assert send_raw(shop.url, "GET http://evil.example/api/limited HTTP/1.1").status == 401
    # The gateway's own endpoints answer an absolute-form target as they answer its path, whatever
    # the port policy for them is.
    for own in ["/metrics", "/info", "//metrics", "/healthz"]:
        assert (
            send_raw(shop.url, f"GET http://evil.example{own} HTTP/1.1").status
            == send_raw(shop.url, f"GET {own} HTTP/1.1").status
        ), own


def _metric(base_url: str, sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels``, as ``base_url``/metrics has them."""
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items())
    )


def _assert_no_error_logged(output: str, who: str) -> None:
    errors = [line for line in output.splitlines() if '"level":"ERROR"' in line or "Traceback" in line]
    assert not errors, f"{who} logged errors:\n" + "\n".join(errors)


def test_bodies_cut_short_through_the_gateway_are_the_callers_fault_alone(shop):
    """A bad chunk size is a 400 problem; callers leaving mid-body, more than enough of them to open a
    breaker that counted them, open nothing and make neither the gateway nor the catalog log an error."""
    request_line = "POST /api/catalog/products HTTP/1.1"
    headers = {
        "authorization": f"Bearer {shop.token('admin')}",
        "content-type": "application/json",
        "transfer-encoding": "chunked",
    }
    assert shop.gateway is not None
    catalogs = [catalog for catalog in shop.catalogs.values() if catalog.process.poll() is None]
    logged = [(catalog, len(catalog.output())) for catalog in [shop.gateway, *catalogs]]
    opened = {"service": "catalog", "to_state": "open"}
    openings = _metric(shop.gateway_internal_url, "flotilla_http_client_breaker_transitions_total", **opened)
    posts = {"method": "POST", "route": "/api/catalog/products/{path}"}
    posted = _metric(shop.gateway_internal_url, "http_requests_total", **posts)

    bad = send_raw(shop.url, request_line, headers=headers, body=b"zz\r\n{}\r\n0\r\n\r\n")
    assert bad.status == 400, bad
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert json.loads(bad.body)["type"].endswith("/incomplete-body")

    for _ in range(20):
        send_and_leave(shop.url, request_line, headers=headers, body=b'40\r\n{"sku": "cut-short", "na')

    async def all_handled() -> bool:
        return _metric(shop.gateway_internal_url, "http_requests_total", **posts) >= posted + 21

    asyncio.run(eventually(all_handled, timeout=30, what="the gateway has handled every request"))
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        assert http.get("/api/catalog/products").status_code == 200
    assert _metric(shop.gateway_internal_url, "flotilla_http_client_breaker_transitions_total", **opened) == openings
    for process, since in logged:
        # Answered after the cut-short requests: what a process logs about them is in by now.
        assert httpx.get(f"{process.base_url}/healthz").status_code == 200
        _assert_no_error_logged(process.output()[since:], process.base_url)


def test_a_small_body_trickling_in_is_answered_408_within_the_routes_timeout(shop):
    """A caller that announces a small body and sends only part of it must not hold the gateway (a
    task, an upstream slot) for as long as it likes: the route's timeout (3 s here) bounds the wait.
    Before, no answer ever came while the caller kept the connection open."""
    headers = {"authorization": f"Bearer {shop.token('admin')}", "content-type": "application/json"}
    body = b'{"sku": "TRICKLE-1", "name": "Trickle", "price": {"amount": 1, "currency": "EUR"}}'
    answer = send_raw(
        shop.url,
        "POST /api/catalog/products HTTP/1.1",
        headers={**headers, "content-length": str(len(body))},
        body=body[:10],  # the rest never comes; the socket waits up to 30 s for an answer
    )
    assert answer.status == 408, answer
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert json.loads(answer.body)["detail"] == "the request body did not arrive within 3s"
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        assert http.get("/api/catalog/products/by-sku/TRICKLE-1").status_code == 404  # nothing was created


def test_two_authorization_headers_are_refused_whichever_comes_first(shop):
    """Before, the last one counted: a proxy in front that checks the first would let a user token
    through while the gateway acted on the admin token behind it."""
    admin, user = f"Bearer {shop.token('admin')}", f"Bearer {shop.token()}"
    for first, second in [(user, admin), (admin, user)]:
        headers = [("authorization", first), ("authorization", second)]
        answer = send_raw(shop.url, "GET /api/limited HTTP/1.1", headers=headers)
        assert answer.status == 400, answer
        assert "one Authorization header" in json.loads(answer.body)["detail"]
