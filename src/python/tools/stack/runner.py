"""The whole platform as local processes: Redis, every service, and the gateway in front.

Services run from the sources on ``sys.path`` (``python -m <service> serve``), each service with
its own SQLite file (its replicas share it), registered in Redis discovery; callers go through the gateway with JWTs
signed by a key made for the run, on the gateway's real route table. The end-to-end and fault
tests start the platform with it (the benchmarks start the real `stack up`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from flotilla_contracts.events import CATALOG_EVENTS, INVENTORY_EVENTS, ORDERS_EVENTS, PAYMENTS_EVENTS
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import RedisServer, start_redis
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.stats import GroupStats, group_stats
from prometheus_client.parser import text_string_to_metric_families

SERVICES = ("catalog", "inventory", "orders", "payments", "notifications")
# Every consumer group of the shop: (stream, group).
GROUPS = (
    (CATALOG_EVENTS, "inventory"),
    (ORDERS_EVENTS, "inventory"),
    (ORDERS_EVENTS, "payments"),
    (ORDERS_EVENTS, "notifications"),
    (INVENTORY_EVENTS, "orders"),
    (PAYMENTS_EVENTS, "orders"),
)
# A short registry TTL (production: 10 s), so that a killed instance drops out of discovery soon;
# not shorter, or a heartbeat late on a loaded machine drops a live one (heartbeats every TTL/3).
_FAST = {"DISCOVERY_TTL_SECONDS": "5", "LOG_LEVEL": "WARNING"}


@dataclass
class Platform:
    directory: Path
    redis_server: RedisServer
    private_key: ed25519.Ed25519PrivateKey
    env: dict[str, dict[str, str]]  # per service: settings on top of the defaults
    instances: dict[str, ServiceProcess] = field(default_factory=dict)  # by instance id
    gateway: ServiceProcess | None = None

    # --- processes

    def start(self, service: str, instance: str | None = None, **env: str) -> ServiceProcess:
        """Start an instance of ``service`` (on the service's SQLite file) and wait until ready."""
        instance = instance or service
        port = free_port()
        settings = {
            "PYTHONPATH": os.pathsep.join(sys.path),
            **_FAST,
            "DISCOVERY": "redis",
            "REDIS_URL": self.redis_server.url,
            "INSTANCE_ID": instance,
            "DATABASE_URL": f"sqlite:///{self.directory}/{service}.db",  # replicas share it
            **self.env.get(service, {}),
            **env,
        }
        process = ServiceProcess([sys.executable, "-m", service, "serve", "--port", str(port)], port=port, env=settings)
        process.wait_ready(timeout=90)
        self.instances[instance] = process
        return process

    def stop(self, instance: str, sig: int = signal.SIGTERM) -> None:
        self.instances.pop(instance).stop(sig)

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.base_url

    # --- callers

    def token(self, *roles: str, sub: str) -> str:
        body = {"sub": sub, "aud": "flotilla", "exp": int(time.time()) + 3600, "roles": list(roles)}
        return jwt.encode(body, self.private_key, algorithm="EdDSA")

    def client(self, *roles: str, sub: str) -> httpx.Client:
        """An HTTP client to the gateway that calls as ``sub`` with ``roles``."""
        headers = {"authorization": f"Bearer {self.token(*roles, sub=sub)}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    # --- what the tests count

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_server.url)

    def stats(self, stream: str, group: str) -> GroupStats | None:
        """One consumer group's figures (length, pending, lag, dead letters, reclaims, recreations)."""

        async def collect() -> GroupStats | None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.redis_server.url)
            try:
                return await group_stats(client, stream, group)
            finally:
                await client.aclose()

        return asyncio.run(collect())

    def group_counts(self) -> dict[tuple[str, str], tuple[int, int, int]]:
        """(pending, lag, dead letters) of every consumer group of the shop."""
        counts = {}
        for stream, group in GROUPS:
            stats = self.stats(stream, group)
            counts[(stream, group)] = (stats.pending, stats.lag, stats.dlq_length) if stats else (0, 0, 0)
        return counts

    def metric(self, instance: str, name: str, **labels: str) -> float:
        """A sample of an instance's ``/metrics`` (0 when it has none yet)."""
        text = httpx.get(f"{self.instances[instance].base_url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return 0.0

    def wait_until_drained(self, timeout: float = 60.0) -> None:
        """Until no group has an entry pending or undelivered: every event has been handled and acked."""
        eventually_sync(
            lambda: all(pending == 0 and lag == 0 for pending, lag, _ in self.group_counts().values()),
            timeout=timeout,
            interval=0.1,
            what=f"every consumer group drained (last: {self.group_counts()})",
        )

    def dead_letters(self) -> int:
        return sum(dead for _, _, dead in self.group_counts().values())


@contextlib.contextmanager
def running_platform(
    directory: Path, *, services: tuple[str, ...] = SERVICES, env: dict[str, dict[str, str]] | None = None
) -> Iterator[Platform]:
    """Redis, one instance of each of ``services`` and the gateway; everything stopped on leaving.

    ``env`` gives settings per service (``{"orders": {"SAGA_STEP_TIMEOUT_SECONDS": "3"}}``), the
    gateway's under ``"gateway"``.
    """
    redis_server = start_redis(persistent=True)
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (directory / "public.pem").write_bytes(public)
    platform = Platform(directory, redis_server, key, env or {})
    try:
        for service in services:
            platform.start(service)
        gateway_port = free_port()
        gateway_env = {
            "PYTHONPATH": os.pathsep.join(sys.path),
            **_FAST,
            "DISCOVERY": "redis",
            "REDIS_URL": redis_server.url,
            "JWT_PUBLIC_KEY_FILE": str(directory / "public.pem"),
            "RATE_LIMITS": "default=10000/1,burst=10000;strict=10000/1,burst=10000",
            "INTERNAL_PORT": str(free_port()),
            **platform.env.get("gateway", {}),
        }
        platform.gateway = ServiceProcess(
            [sys.executable, "-m", "gateway", "serve", "--port", str(gateway_port)], port=gateway_port, env=gateway_env
        )
        platform.gateway.wait_ready(timeout=90)
        yield platform
    finally:
        # Gateway first (no new work), Redis last (services flush their outboxes into it).
        if platform.gateway is not None:
            platform.gateway.stop()
        for process in platform.instances.values():
            process.stop()
        redis_server.close()
