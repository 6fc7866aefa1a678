"""The console with real services: the catalog and inventory export their spans to a real console process
(OTEL_EXPORTER_OTLP_ENDPOINT, as flotilla_kit's exporter sends them, gzip too), one trace crosses the
stream hop, and the console lists every instance from the discovery registry with readiness, version
and traffic."""

import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.tokens import TokenIssuer
from flotilla_kit.testing.waiting import eventually_sync

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}  # the catalog's caller, as the gateway sets it
# The console's operators come with the gateway's tokens.
ISSUER = TokenIssuer(Path(tempfile.mkdtemp(prefix="console-e2e-jwt-")))
OPERATOR = ISSUER.bearer("operator", sub="ops-1")


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """Redis, the console, and the catalog and inventory exporting to it; all registered in discovery."""
    directory = tmp_path_factory.mktemp("console-platform")
    redis_server = start_redis()
    started: dict[str, ServiceProcess] = {}

    def start(service: str, **env: str) -> ServiceProcess:
        port = free_port()
        settings = {
            "PYTHONPATH": ":".join(sys.path),
            "LOG_LEVEL": "WARNING",
            "DISCOVERY": "redis",
            "DISCOVERY_TTL_SECONDS": "5",
            "REDIS_URL": redis_server.url,
            "INSTANCE_ID": f"{service}-1",
            "DATABASE_URL": f"sqlite:///{directory}/{service}.db",
            **env,
        }
        process = ServiceProcess([sys.executable, "-m", service, "serve", "--port", str(port)], port=port, env=settings)
        started[service] = process
        process.wait_ready(timeout=90)
        return process

    try:
        console = start("console", JWT_PUBLIC_KEY_FILE=str(ISSUER.public_key_file))
        # The SDK's batch processor exports every 200 ms instead of every 5 s: the test sees spans sooner.
        tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": console.base_url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
        start("catalog", **tracing)
        # The inventory's exporter compresses: the console inflates what a real SDK sends gzipped.
        # ... and keeps /metrics and /info on its internal port, which it registers for the console to probe.
        start("inventory", **tracing, OTEL_EXPORTER_OTLP_COMPRESSION="gzip", INTERNAL_PORT=str(free_port()))
        yield started
    finally:
        for process in reversed(list(started.values())):
            process.stop()
        redis_server.close()


def test_a_request_to_a_service_shows_in_the_console_as_one_trace_across_the_stream_hop(platform):
    console, catalog = platform["console"], platform["catalog"]
    body = {"sku": "TEA-EXPORT", "name": "Green tea", "price": {"amount": 450, "currency": "EUR"}}
    created = httpx.post(f"{catalog.base_url}/products", json=body, headers=ADMIN, timeout=30)
    assert created.status_code == 201, created.text
    trace_id = created.headers["traceparent"].split("-")[1]

    def trace_complete() -> bool:
        # Each service exports its spans in batches of its own, in any order: wait for the whole
        # trace (the root, inventory's part, and no span whose parent has not arrived yet).
        response = httpx.get(f"{console.base_url}/api/traces/{trace_id}", headers=OPERATOR, timeout=10)
        if response.status_code != 200 or "inventory" not in response.json()["trace"]["services"]:
            return False
        ids = {span["span_id"] for span in response.json()["spans"]}
        parents = [span["parent_span_id"] for span in response.json()["spans"]]
        has_root = any(not parent for parent in parents)
        return has_root and all(not parent or parent in ids for parent in parents)

    eventually_sync(trace_complete, timeout=60, what="the product's whole trace in the console, through inventory")
    trace = httpx.get(f"{console.base_url}/api/traces/{trace_id}", headers=OPERATOR, timeout=10).json()
    spans = {span["span_id"]: span for span in trace["spans"]}
    [root] = [span for span in spans.values() if not span["parent_span_id"]]
    assert (root["service"], root["kind"], root["name"]) == ("catalog", "SERVER", "POST /products")
    assert trace["trace"]["root_name"] == "POST /products"
    consumer = next(span for span in spans.values() if span["service"] == "inventory" and span["kind"] == "CONSUMER")
    assert consumer["name"] == "process catalog.events"
    assert consumer["links"], "a consumer span links to the producer's context from the envelope"
    # Every span hangs off the tree (parent in the trace) or is the root: the waterfall has no orphans.
    assert all(span["parent_span_id"] in spans for span in spans.values() if span is not root)

    found = httpx.get(
        f"{console.base_url}/api/traces",
        params={"service": "catalog", "operation": "POST /products"},
        headers=OPERATOR,
        timeout=10,
    ).json()["items"]
    assert trace_id in [item["trace_id"] for item in found]


def test_the_services_view_lists_every_registered_instance_ready_with_its_version_and_traffic(platform):
    console, catalog = platform["console"], platform["catalog"]

    def instances() -> dict[str, dict]:
        items = httpx.get(f"{console.base_url}/api/services", headers=OPERATOR, timeout=10).json()["items"]
        return {item["instance_id"]: item for item in items}

    eventually_sync(lambda: set(instances()) == {"console-1", "catalog-1", "inventory-1"}, what="three instances")
    for _ in range(5):
        assert httpx.get(f"{catalog.base_url}/products", timeout=10).status_code == 200

    def catalog_traffic_measured() -> bool:
        # Rates need two probes; the console's own probes (/readyz, /info, /metrics) are not traffic.
        item = instances()["catalog-1"]
        return item["requests_per_second"] is not None and item["p99_ms"] is not None

    eventually_sync(catalog_traffic_measured, what="the catalog's request rate and latency")
    item = instances()["catalog-1"]
    assert (item["service"], item["ready"], item["version"], item["url"]) == (
        "catalog",
        True,
        "0.1.0",
        catalog.base_url,
    )
    assert item["error_ratio"] == 0.0 and item["p50_ms"] > 0 and item["started_at"] > 0
    inventory = instances()["inventory-1"]
    assert inventory["ready"] is True and inventory["version"] == "0.1.0" and inventory["git_revision"]
    eventually_sync(
        lambda: instances()["inventory-1"]["requests_per_second"] is not None,
        what="the inventory's rate, read from /metrics on its internal port",
    )

    page = httpx.get(f"{console.base_url}/", timeout=10)
    assert page.status_code == 200 and 'src="static/console.js"' in page.text
    assert httpx.get(f"{console.base_url}/static/console.js", timeout=10).status_code == 200
