import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import ORDERS_EVENTS, Event, OrderCancelled, OrderConfirmed
from flotilla_kit.testing.apps import started
from flotilla_kit.testing.fixtures import database_url, postgres, redis, redis_server
from flotilla_kit.testing.waiting import eventually
from flotilla_streams import testing as streams_testing
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.envelope import Envelope
from notifications.app import create_app
from notifications.models import Base
from notifications.settings import NotificationsSettings

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}
GROUP = "notifications"
FAST = ConsumerOptions(
    block_ms=50, retry_backoff_ms=5, max_retry_backoff_ms=40, maintenance_interval_ms=10, max_deliveries=5
)


def customer(customer_id: str) -> dict[str, str]:
    return {"x-caller-id": customer_id, "x-caller-roles": "customer"}


@pytest.fixture
def make_settings(tmp_path, redis_server):
    def make_settings(database_url: str | None = None, instance_id: str = "notifications-1") -> NotificationsSettings:
        return NotificationsSettings(
            service_name="notifications",
            database_url=database_url or f"sqlite+aiosqlite:///{tmp_path}/notifications.db",
            redis_url=redis_server.url,
            instance_id=instance_id,
        )

    return make_settings


@contextlib.asynccontextmanager
async def running(settings: NotificationsSettings) -> AsyncIterator[tuple[Litestar, AsyncTestClient]]:
    """The notifications app, started by the test client (its consumer runs beside the test)."""
    app = create_app(settings, consumer_options=FAST)
    async with started(app) as http:
        yield app, http


@pytest.fixture
async def notifications(make_settings, redis):
    async with running(make_settings()) as started:
        yield started


def confirmed(order_id: uuid.UUID, customer_id: str = "c-1", amount: int = 1250) -> OrderConfirmed:
    return OrderConfirmed(order_id=order_id, customer_id=customer_id, total=Money(amount, "EUR"))


def cancelled(order_id: uuid.UUID, customer_id: str = "c-1", reason: str = "out of stock") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id=customer_id, reason=reason)


async def publish(redis, event: Event, *, envelope: Envelope | None = None) -> Envelope:
    """XADD ``event`` on orders.events as orders would; pass ``envelope`` to deliver one again, same id."""
    return await streams_testing.publish(redis, ORDERS_EVENTS, event, source="orders", envelope=envelope)


async def handled(redis) -> None:
    """Wait until the group has handled and acked every entry of orders.events."""
    await eventually(lambda: streams_testing.group_done(redis, ORDERS_EVENTS, GROUP), what="orders.events handled")


def migrated(database_url: str):
    """The notifications tables and the messaging tables on ``database_url``, for tests below the app."""
    return streams_testing.database_with(database_url, Base.metadata)


waiting_on_a_lock = streams_testing.someone_waits_on_a_lock


async def listed(http: AsyncTestClient, headers: dict[str, str], **params) -> list[dict]:
    """Every notification the caller sees with ``params``, through all pages."""
    items: list[dict] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/notifications", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
