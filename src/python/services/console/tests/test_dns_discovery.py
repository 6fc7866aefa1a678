"""Services that resolve their peers by DNS (DISCOVERY=dns, as in Kubernetes) still show on the Services page:
every instance with a REDIS_URL registers in the registry, at its advertised host. Real processes (a service
on the kit's runtime and the console, both as pods run them) and a real Redis."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from console.tests.conftest import ISSUER, OPERATOR, SECRET

from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_kit.tests import demo_service


def _start_pod_like(module: str, redis_url: str, instance_id: str, **env: str) -> ServiceProcess:
    """A service as a pod runs it: on every address, reached at its advertised IP, peers by DNS."""
    port = free_port()
    settings = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LOG_LEVEL": "WARNING",
        "DISCOVERY": "dns",
        "DNS_TEMPLATE": "http://{service}:8000",
        "HOST": "0.0.0.0",
        "ADVERTISE_HOST": "127.0.0.1",
        "INTERNAL_PORT": str(free_port()),
        "DISCOVERY_TTL_SECONDS": "5",
        "REDIS_URL": redis_url,
        "INSTANCE_ID": instance_id,
        **env,
    }
    process = ServiceProcess([sys.executable, "-m", module, "serve", "--port", str(port)], port=port, env=settings)
    try:
        process.wait_ready(timeout=90)
    except BaseException:
        process.stop()
        raise
    return process


@pytest.fixture
def pods(redis_server, tmp_path: Path) -> Iterator[dict[str, ServiceProcess]]:
    started: dict[str, ServiceProcess] = {}
    try:
        started["console"] = _start_pod_like(
            "console",
            redis_server.url,
            "console-7d9f-x2",
            DATABASE_URL=f"sqlite:///{tmp_path}/console.db",
            JWT_PUBLIC_KEY_FILE=str(ISSUER.public_key_file),
            CONSOLE_SECRET=SECRET,
        )
        started["demo"] = _start_pod_like(demo_service.__name__, redis_server.url, "demo-5c4b-k8")
        yield started
    finally:
        for process in reversed(list(started.values())):
            process.stop()


def _services(console: ServiceProcess) -> dict[str, dict[str, Any]]:
    answer = httpx.get(f"{console.base_url}/api/services", headers=OPERATOR, timeout=10)
    assert answer.status_code == 200, answer.text
    return {item["instance_id"]: item for item in answer.json()["items"]}


def _registered(redis_url: str, service: str) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        client = redis.Redis.from_url(redis_url)
        try:
            return [(i.instance_id, i.url, i.internal_url) for i in await RedisRegistry(client).instances(service)]
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_services_resolving_by_dns_are_registered_and_listed_with_readiness_and_traffic(pods, redis_server):
    console, demo = pods["console"], pods["demo"]
    # Ready does not wait for the registry outside redis mode (callers find the pod by DNS).
    eventually_sync(lambda: bool(_registered(redis_server.url, "demo")), what="the demo pod registered")
    [(instance_id, url, internal_url)] = _registered(redis_server.url, "demo")
    assert (instance_id, url) == ("demo-5c4b-k8", demo.base_url)  # ADVERTISE_HOST, not the wildcard HOST
    assert internal_url.startswith("http://127.0.0.1:") and internal_url != url

    eventually_sync(
        lambda: {"console-7d9f-x2", "demo-5c4b-k8"} <= set(_services(console)), what="both pods on the Services page"
    )
    for _ in range(3):
        assert httpx.post(f"{demo.base_url}/notes", json={"text": "hi"}, timeout=10).status_code == 201
    # Rates need two probes; /metrics is read at the registered internal URL.
    eventually_sync(
        lambda: _services(console)["demo-5c4b-k8"]["requests_per_second"] is not None,
        what="the demo's request rate",
    )
    item = _services(console)["demo-5c4b-k8"]
    assert (item["service"], item["url"], item["ready"], item["version"]) == ("demo", demo.base_url, True, "0.0.1")

    demo.stop()  # deregisters on SIGTERM: gone from the page without waiting for the TTL
    pods.pop("demo")
    eventually_sync(lambda: "demo-5c4b-k8" not in _services(console), what="the stopped pod gone from the page")
    assert _registered(redis_server.url, "demo") == []
