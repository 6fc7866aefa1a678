import uuid
from collections.abc import Iterator

import pytest
import redis
from litestar.testing import TestClient

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import CATALOG_EVENTS, ORDERS_EVENTS, Event, OrderCancelled, OrderConfirmed, OrderPlaced
from flotilla_contracts.orders import OrderLine
from flotilla_kit.testing.fixtures import database_url, postgres, redis_server
from flotilla_kit.testing.processes import ServiceProcess, running_service
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.dlq import dlq_stream
from flotilla_streams.envelope import ENVELOPE_FIELD, Envelope, encode, wrap
from inventory.app import create_app
from inventory.settings import InventorySettings

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}

# Short waits, so that a test sees retries and shutdowns quickly (production keeps the defaults).
FAST = ConsumerOptions(block_ms=50, retry_backoff_ms=10, maintenance_interval_ms=20)


def settings_for(database_url: str, redis_url: str, instance: str = "inventory-test") -> InventorySettings:
    return InventorySettings(
        service_name="inventory",
        database_url=database_url,
        redis_url=redis_url,
        instance_id=instance,
        max_page_size=50,
    )


@pytest.fixture
def streams(redis_server) -> Iterator[redis.Redis]:
    """A plain client of the test Redis, emptied first: no test consumes another's events."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def client(database_url, redis_server, streams):
    """The inventory app on its own fresh database, SQLite and PostgreSQL in turn, on a real Redis."""
    app = create_app(settings_for(database_url, redis_server.url), consumer_options=FAST)
    with TestClient(app) as client:
        yield client
    # No test here means to put a poison message anywhere: every event was handled or ignored.
    assert {stream: streams.xlen(dlq_stream(stream)) for stream in (ORDERS_EVENTS, CATALOG_EVENTS)} == {
        ORDERS_EVENTS: 0,
        CATALOG_EVENTS: 0,
    }


@pytest.fixture(scope="module")
def inventory(tmp_path_factory, redis_server) -> Iterator[ServiceProcess]:
    """The inventory served for real (python -m inventory serve), one process per test module that asks."""
    data_dir = tmp_path_factory.mktemp("inventory")
    with running_service("inventory", redis_url=redis_server.url, data_dir=data_dir) as process:
        yield process


def publish(streams: redis.Redis, stream: str, event: Event, *, envelope: Envelope | None = None) -> Envelope:
    """XADD one event as a producer would (``envelope`` given: that very envelope again, a redelivery)."""
    envelope = envelope or wrap(event, source="tests")
    streams.xadd(stream, {ENVELOPE_FIELD: encode(envelope)})
    return envelope


def order_placed(*lines: tuple[uuid.UUID, int], order_id: uuid.UUID | None = None) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id or uuid.uuid4(),
        customer_id="customer-1",
        lines=[
            OrderLine(product_id=product, sku=f"SKU-{product.hex[:6]}", quantity=quantity, unit_price=Money(100, "EUR"))
            for product, quantity in lines
        ],
        total=Money(100 * sum(quantity for _, quantity in lines), "EUR"),
    )


def order_cancelled(order_id: uuid.UUID, reason: str = "payment declined") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="customer-1", reason=reason)


def order_confirmed(order_id: uuid.UUID) -> OrderConfirmed:
    return OrderConfirmed(order_id=order_id, customer_id="customer-1", total=Money(100, "EUR"))
