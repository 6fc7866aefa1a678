import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import sqlalchemy as sa
from litestar import Litestar
from litestar.testing import AsyncTestClient

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import (
    ORDERS_EVENTS,
    PAYMENTS_EVENTS,
    Event,
    OrderCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentRequested,
)
from flotilla_kit.db import Database
from flotilla_kit.testing.apps import started
from flotilla_kit.testing.fixtures import database_url, postgres, redis, redis_server
from flotilla_kit.testing.waiting import eventually
from flotilla_streams import testing as streams_testing
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.envelope import Envelope, PayloadDecoder
from flotilla_streams.schema import outbox
from payments.app import create_app
from payments.models import Base
from payments.settings import PaymentsSettings

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}
GROUP = "payments"
# Retries within milliseconds, so that tests of failures and races stay fast.
FAST = ConsumerOptions(
    block_ms=50, retry_backoff_ms=5, max_retry_backoff_ms=40, maintenance_interval_ms=10, max_deliveries=5
)

_payment_events = PayloadDecoder([PaymentCaptured, PaymentDeclined, PaymentRefunded])


@pytest.fixture
def make_settings(tmp_path, redis_server):
    def make_settings(database_url: str | None = None, **overrides) -> PaymentsSettings:
        return PaymentsSettings(
            service_name="payments",
            database_url=database_url or f"sqlite+aiosqlite:///{tmp_path}/payments.db",
            redis_url=redis_server.url,
            instance_id=overrides.pop("instance_id", "payments-1"),
            **overrides,
        )

    return make_settings


@contextlib.asynccontextmanager
async def running(
    settings: PaymentsSettings, options: ConsumerOptions = FAST
) -> AsyncIterator[tuple[Litestar, AsyncTestClient]]:
    """The payments app, started in this event loop (its consumer and relay run beside the test)."""
    app = create_app(settings, consumer_options=options)
    async with started(app) as http:
        yield app, http


@pytest.fixture
async def payments(make_settings, redis):
    """Payments on a SQLite file, with the default provider (declines above 100000 and tok_declined)."""
    async with running(make_settings()) as started:
        yield started


def requested(order_id: uuid.UUID, amount: int = 2500, card_token: str = "tok_visa") -> PaymentRequested:
    return PaymentRequested(order_id=order_id, customer_id="c-1", amount=Money(amount, "EUR"), card_token=card_token)


def cancelled(order_id: uuid.UUID, reason: str = "payment timed out") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="c-1", reason=reason)


async def publish(redis, event: Event, *, envelope: Envelope | None = None) -> Envelope:
    """XADD ``event`` on orders.events as orders would; pass ``envelope`` to deliver one again, same id."""
    return await streams_testing.publish(redis, ORDERS_EVENTS, event, source="orders", envelope=envelope)


async def payment_events(redis) -> list[Event]:
    """What payments published, in order (XRANGE of payments.events)."""
    return await streams_testing.read_events(redis, PAYMENTS_EVENTS, _payment_events)


def migrated(database_url: str):
    """The payments table and the messaging tables on ``database_url``, for tests below the app."""
    return streams_testing.database_with(database_url, Base.metadata)


waiting_on_a_lock = streams_testing.someone_waits_on_a_lock


@contextlib.asynccontextmanager
async def database_of(app: Litestar) -> AsyncIterator[Database]:
    """The app's database, opened in the test's event loop (the app runs in the test client's own)."""
    db = Database(app.state.settings.database_url)
    try:
        yield db
    finally:
        await db.dispose()


async def settled(app: Litestar, redis) -> None:
    """Wait until the group has handled and acked every entry, and the outbox has relayed every event."""

    async with database_of(app) as db:

        async def done() -> bool:
            if not await streams_testing.group_done(redis, ORDERS_EVENTS, GROUP):
                return False
            unsent = await db.fetch_one(sa.select(sa.func.count()).where(outbox.c.sent_at.is_(None)))
            return unsent is not None and unsent[0] == 0

        await eventually(done, what="orders.events handled and the outbox relayed")


async def payment(http: AsyncTestClient, order_id: uuid.UUID) -> dict | None:
    response = await http.get(f"/payments/{order_id}", headers=ADMIN)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.json()


def kinds(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


def as_dict(event: Event) -> dict:
    return msgspec.to_builtins(event)
