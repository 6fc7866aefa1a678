import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import msgspec
import pytest
from litestar import get, post
from litestar.params import JSONBody
from litestar.testing import TestClient

from flotilla_http.context import remaining
from flotilla_kit.app import create_service_app
from flotilla_kit.problems import Conflict
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing.ports import free_port


class Order(msgspec.Struct):
    sku: str
    quantity: int


@post("/orders")
async def place(data: JSONBody[Order]) -> Order:
    return data


@get("/conflict")
async def conflict() -> None:
    raise Conflict("order o-1 was already placed")


@get("/deadline", sync_to_thread=False)
def deadline_left() -> dict[str, float | None]:
    return {"remaining": remaining()}


@get("/crash")
async def crash() -> None:
    raise RuntimeError("secret internal detail")


async def _failing_check() -> None:
    raise ConnectionError("redis at 127.0.0.1:1 refused")


@pytest.fixture
def settings(tmp_path):
    return ServiceSettings(
        service_name="demo", database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db", max_request_body_bytes=1000
    )


@pytest.fixture
def client(settings):
    app = create_service_app(settings, version="1.2.3", route_handlers=[place, conflict, crash, deadline_left])
    with TestClient(app) as client:
        yield client


def _assert_problem(response, status, type_suffix):
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + type_suffix)
    assert body["title"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok"}}


def test_readiness_fails_with_the_reason_when_a_check_fails(settings):
    app = create_service_app(settings, version="1", route_handlers=[], readiness_checks={"redis": _failing_check})
    with TestClient(app) as client:
        body = _assert_problem(client.get("/readyz"), 503, "not-ready")
    assert "redis: failed: ConnectionError: redis at 127.0.0.1:1 refused" in body["detail"]
    assert {"check": "database", "result": "ok"} in body["errors"]


def test_info_reports_versions(client):
    info = client.get("/info").json()
    assert info["service"] == "demo"
    assert info["version"] == "1.2.3"
    assert info["database"] == "sqlite"
    assert info["libs"]["flotilla_kit"] == (__import__("flotilla_kit").__version__)
    assert info["runtime"]["litestar"]


def test_metrics_count_requests_by_route_template(client):
    client.post("/orders", json={"sku": "A", "quantity": 1})
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/orders",status="201"} 1.0' in text
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text
    assert 'service_info{git_revision="unknown",version="1.2.3"} 1.0' in text


def test_unknown_methods_share_one_metric_label_so_callers_cannot_grow_the_series(client):
    for method in ("BREW", "WHEN", "X-SCAN"):
        client.request(method, "/orders")
    text = client.get("/metrics").text
    assert 'http_requests_total{method="OTHER",route="<unmatched>",status="405"} 3.0' in text
    assert "BREW" not in text


def test_a_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_trace_context_continues_the_callers_trace(client):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    answered = client.get("/healthz", headers={"traceparent": parent}).headers["traceparent"]
    version, trace_id, span_id, flags = answered.split("-")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span_id != "b7ad6b7169203331"


def test_malformed_json_is_a_400_problem(client):
    response = client.post(
        "/orders", content=b'{"sku": "A", "quantity": ', headers={"content-type": "application/json"}
    )
    body = _assert_problem(response, 400, "malformed-body")
    assert "could not be decoded" in body["detail"]


def test_wrong_types_are_a_400_problem_naming_the_field(client):
    body = _assert_problem(client.post("/orders", json={"sku": "A", "quantity": "many"}), 400, "validation-error")
    assert "quantity" in json.dumps(body)


def test_an_oversized_body_is_a_413_problem(client):
    response = client.post("/orders", json={"sku": "A" * 2000, "quantity": 1})
    _assert_problem(response, 413, "request-entity-too-large")


def test_an_oversized_body_without_content_length_is_refused_too(client):
    def chunks():
        for _ in range(20):
            yield b" " * 100

    response = client.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    _assert_problem(response, 413, "request-entity-too-large")


def test_unknown_routes_are_404_problems(client):
    body = _assert_problem(client.get("/nowhere"), 404, "not-found")
    assert body["instance"] == "/nowhere"


def test_typed_errors_become_their_problem(client):
    body = _assert_problem(client.get("/conflict"), 409, "conflict")
    assert body["detail"] == "order o-1 was already placed"


def test_unexpected_errors_are_500_problems_without_internals(client):
    response = client.get("/crash")
    body = _assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert body["detail"] == "An unexpected error occurred."


def test_a_wrong_method_is_a_405_problem(client):
    _assert_problem(client.delete("/orders"), 405, "method-not-allowed")


def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(client):
    got, head = client.get("/info"), client.head("/info")
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"] == str(len(got.content))
    assert client.head("/nowhere").status_code == 404


def test_the_callers_deadline_bounds_the_request(client):
    left = client.get("/deadline", headers={"x-deadline-ms": "1500"}).json()["remaining"]
    assert 0 < left <= 1.5
    assert client.get("/deadline").json() == {"remaining": None}
    assert client.get("/deadline", headers={"x-deadline-ms": "soon"}).json() == {"remaining": None}


def test_with_an_internal_port_metrics_and_info_leave_the_public_one(settings):
    port = free_port()
    settings = msgspec.structs.replace(settings, host="127.0.0.1", internal_port=port)
    app = create_service_app(settings, version="1.2.3", route_handlers=[place])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        _assert_problem(client.get("/metrics"), 404, "not-found")
        _assert_problem(client.get("/info"), 404, "not-found")

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["content-type"].startswith("text/plain")
            assert b"http_requests_total" in response.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/info?pretty", timeout=5) as response:
            assert json.loads(response.read())["version"] == "1.2.3"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/orders", timeout=5)
        assert missing.value.code == 404
    with pytest.raises(urllib.error.URLError):  # closed with the app
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_a_service_may_keep_metrics_and_info_off_its_public_port_without_an_internal_port(settings, caplog):
    app = create_service_app(settings, version="1.2.3", route_handlers=[place], internal_endpoints_public=False)
    with caplog.at_level("INFO", logger="flotilla_kit.app"), TestClient(app) as client:
        _assert_problem(client.get("/metrics"), 404, "not-found")
        _assert_problem(client.get("/info"), 404, "not-found")
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert "/metrics and /info are not served" in caplog.text
    assert "INTERNAL_PORT" in caplog.text


@get("/broken-pipe")
async def broken_pipe() -> None:
    raise BrokenPipeError("a socket of the handler's own, not the database's")


@pytest.mark.parametrize("database", [True, False])
def test_a_connection_error_that_is_not_the_databases_is_a_500_not_a_database_outage(settings, database):
    app = create_service_app(settings, version="1", route_handlers=[broken_pipe], database=database)
    with TestClient(app) as client:
        response = client.get("/broken-pipe")
    assert response.status_code == 500, response.text
    assert "database" not in response.text and "retry-after" not in response.headers


def test_the_problem_module_does_not_need_sqlalchemy():
    # A service without a database (the gateway) builds its problems without the database layer.
    code = "import sys, flotilla_kit.problems; print('sqlalchemy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert result.stdout.strip() == "False", result.stderr
