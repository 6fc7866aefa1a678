"""Notifications on orders.events: real envelopes into a real Redis, the app consuming them."""

import uuid

import sqlalchemy as sa

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import ORDERS_EVENTS, OrderPlaced, PaymentRequested
from flotilla_streams.testing import as_another_instance, handle
from notifications.handlers import notification_handlers
from notifications.models import Notification
from notifications.tests.conftest import (
    ADMIN,
    cancelled,
    confirmed,
    handled,
    listed,
    migrated,
    publish,
    running,
    waiting_on_a_lock,
)


async def test_a_confirmed_order_is_told_once_with_its_total(notifications, redis):
    _, http = notifications
    order_id = uuid.uuid4()
    await publish(redis, confirmed(order_id, customer_id="c-7", amount=4590))
    await handled(redis)

    [told] = await listed(http, ADMIN, order_id=str(order_id))
    assert told["kind"] == "order_confirmed" and told["customer_id"] == "c-7"
    assert told["message"] == f"Your order {order_id} is confirmed. Total: 45.90 EUR."


async def test_a_cancelled_order_is_told_once_with_the_reason(notifications, redis):
    _, http = notifications
    order_id = uuid.uuid4()
    await publish(redis, cancelled(order_id, reason="payment declined: card declined"))
    await handled(redis)

    [told] = await listed(http, ADMIN, order_id=str(order_id))
    assert told["kind"] == "order_cancelled"
    assert told["message"] == f"Your order {order_id} was cancelled: payment declined: card declined."


async def test_a_redelivered_or_repeated_outcome_records_nothing_more(notifications, redis):
    _, http = notifications
    order_id = uuid.uuid4()
    first = await publish(redis, confirmed(order_id))
    await publish(redis, confirmed(order_id), envelope=first)  # the same event id again
    await publish(redis, confirmed(order_id))  # the same outcome under another event id
    cancellation = await publish(redis, cancelled(order_id))
    await publish(redis, cancelled(order_id), envelope=cancellation)
    await publish(redis, cancelled(order_id, reason="told twice"))
    await handled(redis)

    told = await listed(http, ADMIN, order_id=str(order_id))
    # One per outcome: orders never sends both for one order, but if it did, each is told once.
    assert sorted(n["kind"] for n in told) == ["order_cancelled", "order_confirmed"]
    assert "told twice" not in " ".join(n["message"] for n in told)


async def test_the_saga_s_other_events_are_not_notifications(notifications, redis):
    _, http = notifications
    order_id = uuid.uuid4()
    await publish(redis, OrderPlaced(order_id=order_id, customer_id="c-1", lines=[], total=Money(1, "EUR")))
    await publish(
        redis, PaymentRequested(order_id=order_id, customer_id="c-1", amount=Money(1, "EUR"), card_token="tok_x")
    )
    await handled(redis)
    assert await listed(http, ADMIN) == []


async def test_two_instances_on_one_database_tell_each_outcome_once(make_settings, database_url, redis):
    async with (
        running(make_settings(database_url, "notifications-a")),
        running(make_settings(database_url, "notifications-b")) as (_, http),
    ):
        orders = [uuid.uuid4() for _ in range(15)]
        for order_id in orders:
            await publish(redis, confirmed(order_id))
            await publish(redis, confirmed(order_id))  # another event id: the inbox does not catch it
        await handled(redis)

        told = await listed(http, ADMIN, limit=7)
        assert sorted(n["order_id"] for n in told) == sorted(map(str, orders))
    assert await redis.xlen("orders.events.dlq") == 0


async def test_an_outcome_recorded_by_two_transactions_at_once_is_recorded_once_and_fails_neither(database_url):
    # Two instances on one PostgreSQL database handle the same outcome (two event ids) at the same
    # moment: the second waits on the first's unique (order_id, kind), then must find the row and
    # record nothing, not fail its transaction (which would roll back and rerun its whole batch).
    handlers = notification_handlers()
    order_id = uuid.uuid4()
    async with migrated(database_url) as db:
        async with db.transaction() as first:
            await handle(handlers, confirmed(order_id), first, stream=ORDERS_EVENTS)

            async def second() -> None:
                async with db.transaction() as session:
                    await handle(handlers, confirmed(order_id), session, stream=ORDERS_EVENTS)

            racing = as_another_instance(second())
            await waiting_on_a_lock(db)
        await racing  # raised IntegrityError before the fix
        rows = await db.fetch_all(sa.select(Notification.__table__.c.order_id))
    assert [row.order_id for row in rows] == [order_id]
