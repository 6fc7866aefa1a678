"""The gateway's port faces callers: its /metrics and /info stay off it, INTERNAL_PORT or not."""

import urllib.request

import msgspec
import pytest
from litestar.testing import TestClient

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.redis import start_redis
from gateway.app import create_app
from gateway.settings import GatewaySettings

ROUTES = """
[[routes]]
prefix = "/api/catalog/products"
service = "catalog"
upstream_prefix = "/products"
methods = ["GET"]
auth = "public"
rate_limit = "default"
"""


@pytest.fixture(scope="module")
def redis_url():
    server = start_redis()
    yield server.url
    server.close()


@pytest.fixture
def settings(tmp_path, redis_url) -> GatewaySettings:
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES)
    return GatewaySettings(service_name="gateway", host="127.0.0.1", routes_file=str(routes), redis_url=redis_url)


def test_the_public_port_answers_404_for_metrics_and_info_by_default(settings, caplog):
    with TestClient(create_app(settings)) as client:
        for path in ("/metrics", "/info"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("application/problem+json")
        assert client.get("/healthz").status_code == 200
    assert "set INTERNAL_PORT" in caplog.text


def test_with_an_internal_port_metrics_are_served_there_only(settings):
    port = free_port()
    with TestClient(create_app(msgspec.structs.replace(settings, internal_port=port))) as client:
        assert client.get("/metrics").status_code == 404
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"http_requests_total" in response.read()
