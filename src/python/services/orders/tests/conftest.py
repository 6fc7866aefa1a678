"""Real components for the orders tests: Redis, a catalog process, SQLite files and PostgreSQL.

The orders app runs in the test's event loop (AsyncTestClient), with its consumer, relay and
sweeper, and calls the catalog over loopback through static discovery.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from flotilla_contracts.events import ORDERS_EVENTS, Event
from flotilla_kit.db import Database
from flotilla_kit.migrations import migrate
from flotilla_kit.testing.apps import started
from flotilla_kit.testing.fixtures import database_url, postgres, redis, redis_server
from flotilla_kit.testing.processes import ServiceProcess, running_service
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from flotilla_streams.publisher import Publisher
from orders.app import create_app
from orders.settings import OrdersSettings

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}


def customer(name: str = "alice") -> dict[str, str]:
    return {"x-caller-id": name, "x-caller-roles": "customer"}


class FakeClock:
    """A clock the test moves: deadlines pass when the test says so, not after real waiting."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)
        self.broken = False

    def __call__(self) -> datetime:
        if self.broken:
            raise RuntimeError("the clock is broken")
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Catalog:
    """The catalog, as a real process, and a way to put products in it."""

    def __init__(self, process: ServiceProcess) -> None:
        self.process = process
        self.base_url = process.base_url

    def product(self, *, amount: int = 450, currency: str = "EUR", active: bool = True) -> dict[str, Any]:
        body = {"sku": f"SKU-{uuid.uuid4().hex[:12]}", "name": "Tea", "price": {"amount": amount, "currency": currency}}
        created = httpx.post(f"{self.base_url}/products", json=body, headers=ADMIN, timeout=10)
        assert created.status_code == 201, created.text
        product = created.json()
        if not active:
            deactivated = httpx.post(f"{self.base_url}/products/{product['id']}/deactivate", headers=ADMIN, timeout=10)
            assert deactivated.status_code == 200, deactivated.text
            product = deactivated.json()
        return product


@pytest.fixture(scope="session")
def catalog(redis_server, tmp_path_factory) -> Iterator[Catalog]:
    # Redis: the catalog publishes its events.
    with running_service("catalog", redis_url=redis_server.url, data_dir=tmp_path_factory.mktemp("catalog")) as process:
        yield Catalog(process)


@pytest.fixture(scope="module")
def orders_service(catalog, redis_server, tmp_path_factory) -> Iterator[ServiceProcess]:
    """Orders served for real (python -m orders serve), pricing from the catalog; one process per test module."""
    with running_service(
        "orders",
        redis_url=redis_server.url,
        data_dir=tmp_path_factory.mktemp("orders"),
        services={"catalog": catalog.base_url},
    ) as process:
        yield process


def settings_for(database_url: str, redis_url: str, catalog_url: str, **overrides: Any) -> OrdersSettings:
    values: dict[str, Any] = {
        "service_name": "orders",
        "database_url": database_url,
        "redis_url": redis_url,
        "discovery": "static",
        "service_urls": f"catalog={catalog_url}",
        "instance_id": f"orders-{uuid.uuid4().hex[:8]}",
        "sweep_interval_seconds": 0.05,
        **overrides,
    }
    return msgspec.convert(values, OrdersSettings)


OrdersFactory = Callable[..., contextlib.AbstractAsyncContextManager[AsyncTestClient]]


@pytest.fixture
def start_orders(database_url, redis, redis_server, catalog) -> OrdersFactory:
    """Starts the orders app on the test's database (the same one each time: a restart keeps its state)."""

    @contextlib.asynccontextmanager
    async def start(*, clock: Callable[[], datetime] | None = None, **overrides: Any) -> AsyncIterator[AsyncTestClient]:
        overrides.setdefault("service_urls", f"catalog={catalog.base_url}")
        settings = settings_for(database_url, redis_server.url, catalog.base_url, **overrides)
        app = create_app(settings, **({"clock": clock} if clock else {}))
        async with started(app) as client:
            yield client

    return start


def order_body(*products: dict[str, Any], quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"lines": [{"product_id": p["id"], "quantity": quantity} for p in products], **extra}


def new_key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def published(redis, order_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The events orders published about one order, in order: (type, payload)."""
    found = []
    for _, fields in await redis.xrange(ORDERS_EVENTS):
        envelope = decode(fields[ENVELOPE_FIELD])
        payload = msgspec.json.decode(envelope.payload)
        if payload.get("order_id") == order_id:
            found.append((envelope.type, payload))
    return found


async def publish(redis, stream: str, event: Event, *, source: str = "test") -> None:
    await Publisher(redis, source=source).publish(stream, event)


@pytest.fixture
async def orders_db(database_url) -> AsyncIterator[Database]:
    """The orders database, migrated, for tests of one module without the app."""
    db = Database(database_url)
    await migrate(db, "orders.migrations")
    try:
        yield db
    finally:
        await db.dispose()
