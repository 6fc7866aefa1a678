"""The shutdown a pod goes through, on a real process and a real Redis: SIGTERM, readiness fails at
once, the request in flight finishes, the consumer acks what it handled and leaves nothing pending
under its name, the outbox is flushed, and the process exits 0 within the grace period.

The service is tests/lifecycle/shutdown_app.py: the kit's app factory, messaging component and
``serve`` (what every PEX runs), with a request the test holds open and a group whose handler
publishes through the outbox.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from lifecycle.shutdown_app import GROUP, IN_STREAM, OUT_STREAM

from flotilla_contracts.events import ProductDeactivated
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import RedisServer, start_redis
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.publisher import Publisher

POD_NAME = "lifecycle-7d9f8-abcde"  # what the downward API gives INSTANCE_ID in the cluster
SHUTDOWN_TIMEOUT_SECONDS = 15
# The manifests' grace period for this drain timeout (deploy.manifests.grace_period_seconds).
GRACE_PERIOD_SECONDS = 30
EVENTS = 300


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


def _readiness(base_url: str) -> str:
    """``200``, ``503``, or ``refused``: what a kubelet's readiness probe would see."""
    try:
        with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (urllib.error.URLError, ConnectionError):
        return "refused"


async def _publish(url: str, count: int) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        publisher = Publisher(client, source="test")
        for number in range(count):
            await publisher.publish(
                IN_STREAM, ProductDeactivated(product_id=uuid.uuid4(), sku=f"SKU-{number}", version=1)
            )
    finally:
        await client.aclose()


def test_a_pod_stopped_by_sigterm_finishes_its_request_acks_its_events_flushes_its_outbox_and_exits_0(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    database = tmp_path / "lifecycle.db"
    release = tmp_path / "release"
    service = ServiceProcess(
        [sys.executable, "-m", "lifecycle.shutdown_app", "serve", "--port", str(port)],
        port=port,
        env={
            "PYTHONPATH": os.pathsep.join(sys.path),
            "REDIS_URL": redis_server.url,
            "DATABASE_URL": f"sqlite:///{database}",
            "INSTANCE_ID": POD_NAME,
            "SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
            "LOG_LEVEL": "WARNING",
        },
    )
    client = redis.Redis.from_url(redis_server.url)
    try:
        service.wait_ready()
        # The consumer is busy: events keep arriving while the pod is told to stop.
        asyncio.run(_publish(redis_server.url, EVENTS))
        eventually_sync(lambda: client.xlen(OUT_STREAM) > 0, timeout=30)

        answers: dict[str, object] = {}

        def in_flight() -> None:
            with urllib.request.urlopen(f"{service.base_url}/slow?release={release}", timeout=60) as response:
                answers["slow"] = (response.status, response.read())

        request = threading.Thread(target=in_flight)
        request.start()
        eventually_sync(lambda: Path(f"{release}.started").exists(), timeout=10, what="the request in flight")
        assert _readiness(service.base_url) == "200"

        service.process.send_signal(signal.SIGTERM)

        # Readiness fails at once, while the request is still held open: granian stops listening on
        # SIGTERM, so a probe is refused (the kubelet counts that as a failure, like a 503).
        eventually_sync(lambda: _readiness(service.base_url) != "200", timeout=5)
        assert "slow" not in answers
        assert service.process.poll() is None  # still draining: the request holds it

        release.touch()
        request.join(timeout=30)
        assert answers.get("slow") == (200, b'{"status":"finished"}')

        exit_code = service.process.wait(timeout=GRACE_PERIOD_SECONDS)
        assert exit_code == 0, service.output()

        # Nothing left pending under the pod's name: what it read, it handled and acked.
        pending = client.xpending_range(IN_STREAM, GROUP, min="-", max="+", count=EVENTS, consumername=POD_NAME)
        assert pending == []
        # Every event handled (its inbox row, committed with its outbox row) has its follow-up in the
        # out stream: the outbox was flushed on the way out.
        with sqlite3.connect(database) as connection:
            handled = connection.execute("select count(*) from flotilla_inbox where consumer_group = ?", (GROUP,))
            unsent = connection.execute("select count(*) from flotilla_outbox where sent_at is null")
            handled_count, unsent_count = handled.fetchone()[0], unsent.fetchone()[0]
        assert handled_count > 0
        assert unsent_count == 0
        assert client.xlen(OUT_STREAM) == handled_count
    finally:
        release.touch()
        service.stop()
        client.close()
