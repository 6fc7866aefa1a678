"""Real processes over loopback: Redis, catalog instances and the gateway, started from source."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from console.tests.browsing import browser, screenshots  # fixtures of the browser tests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis

ROUTES = """
[[routes]]
prefix = "/api/catalog/products"
service = "catalog"
upstream_prefix = "/products"
methods = ["GET"]
auth = "public"
rate_limit = "default"
timeout = 3.0

[[routes]]
prefix = "/api/catalog/products"
service = "catalog"
upstream_prefix = "/products"
methods = ["POST", "PATCH"]
auth = "role:admin"
rate_limit = "default"
timeout = 3.0

[[routes]]
prefix = "/api/limited"
service = "catalog"
upstream_prefix = "/products"
methods = ["GET"]
auth = "user"
rate_limit = "tight"

[[routes]]
prefix = "/api/catalog"
service = "catalog"
upstream_prefix = "/"
methods = ["GET"]
auth = "public"
"""


def _env() -> dict[str, str]:
    # The services run from the same sources as the tests.
    return {"PYTHONPATH": os.pathsep.join(sys.path), "LOG_LEVEL": "WARNING"}


@dataclass
class Shop:
    directory: Path
    redis_url: str
    private_key: ed25519.Ed25519PrivateKey
    gateway: ServiceProcess | None = None
    gateway_internal_url: str = ""  # /metrics and /info: never on the gateway's public port
    catalogs: dict[str, ServiceProcess] = field(default_factory=dict)
    catalog_ports: dict[str, int] = field(default_factory=dict)

    def start_catalog(self, name: str) -> ServiceProcess:
        port = self.catalog_ports.setdefault(name, free_port())
        env = {
            **_env(),
            "DISCOVERY": "redis",
            "REDIS_URL": self.redis_url,
            "INSTANCE_ID": name,
            "DISCOVERY_TTL_SECONDS": "2",
            "DATABASE_URL": f"sqlite:///{self.directory}/catalog.db",
        }
        process = ServiceProcess([sys.executable, "-m", "catalog", "serve", "--port", str(port)], port=port, env=env)
        process.wait_ready(timeout=60)
        self.catalogs[name] = process
        return process

    def token(self, *roles: str, sub: str = "u1", **claims: object) -> str:
        body = {"sub": sub, "aud": "flotilla", "exp": int(time.time()) + 600, "roles": list(roles), **claims}
        return jwt.encode(body, self.private_key, algorithm="EdDSA")

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.base_url


@contextlib.contextmanager
def running_shop(directory: Path, **gateway_env: str) -> Iterator[Shop]:
    """Redis, two catalogs and a gateway (its settings plus ``gateway_env``), stopped on leaving."""
    redis_server = start_redis()
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (directory / "public.pem").write_bytes(public)
    (directory / "routes.toml").write_text(ROUTES)
    shop = Shop(directory, redis_server.url, key)
    try:
        shop.start_catalog("catalog-a")
        shop.start_catalog("catalog-b")
        port, internal_port = free_port(), free_port()
        shop.gateway_internal_url = f"http://127.0.0.1:{internal_port}"
        env = {
            **_env(),
            "DISCOVERY": "redis",
            "REDIS_URL": redis_server.url,
            "JWT_PUBLIC_KEY_FILE": str(directory / "public.pem"),
            "ROUTES_FILE": str(directory / "routes.toml"),
            "RATE_LIMITS": "default=1000/1,burst=1000;tight=10/60,burst=10",
            "MAX_REQUEST_BODY_BYTES": "100000",
            "INTERNAL_PORT": str(internal_port),
            **gateway_env,
        }
        shop.gateway = ServiceProcess(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)], port=port, env=env
        )
        shop.gateway.wait_ready(timeout=60)
        yield shop
    finally:
        for process in [shop.gateway, *shop.catalogs.values()]:
            if process is not None:
                process.stop()
        redis_server.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Iterator[Shop]:
    with running_shop(tmp_path_factory.mktemp("shop")) as shop:
        yield shop
