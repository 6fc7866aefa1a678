"""Payments on orders.events: real envelopes into a real Redis, the app consuming them on SQLite."""

import dataclasses
import uuid

import sqlalchemy as sa

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import (
    ORDERS_EVENTS,
    PAYMENTS_EVENTS,
    OrderConfirmed,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
)
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from flotilla_streams.outbox import Outbox
from flotilla_streams.schema import outbox as outbox_table
from flotilla_streams.testing import as_another_instance, handle
from payments.handlers import payment_handlers
from payments.models import Payment
from payments.provider import SimulatedProvider
from payments.tests.conftest import (
    ADMIN,
    FAST,
    cancelled,
    kinds,
    migrated,
    payment,
    payment_events,
    publish,
    requested,
    running,
    settled,
    waiting_on_a_lock,
)


async def test_a_requested_payment_is_captured_and_announced(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    placed = await publish(redis, requested(order_id, amount=2500))
    await settled(app, redis)

    [captured] = await payment_events(redis)
    assert isinstance(captured, PaymentCaptured)
    assert captured.order_id == order_id and captured.amount == Money(2500, "EUR")
    recorded = await payment(http, order_id)
    assert recorded["status"] == "captured" and recorded["payment_id"] == str(captured.payment_id)
    assert recorded["amount"] == {"amount": 2500, "currency": "EUR"}
    # The follow-up event carries the request as its cause, in the request's correlation.
    [(_, fields)] = await redis.xrange(PAYMENTS_EVENTS)
    envelope = decode(fields[ENVELOPE_FIELD])
    assert envelope.causation_id == placed.id and envelope.correlation_id == placed.correlation_id


async def test_an_amount_above_the_limit_is_declined(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, requested(order_id, amount=100_001))
    await settled(app, redis)

    [declined] = await payment_events(redis)
    assert isinstance(declined, PaymentDeclined) and "above the limit" in declined.reason
    assert (await payment(http, order_id))["status"] == "declined"


async def test_an_amount_at_the_limit_is_captured(payments, redis):
    app, _ = payments
    await publish(redis, requested(uuid.uuid4(), amount=100_000))
    await settled(app, redis)
    assert kinds(await payment_events(redis)) == ["PaymentCaptured"]


async def test_the_marked_card_token_is_declined(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, requested(order_id, amount=100, card_token="tok_declined"))
    await settled(app, redis)

    [declined] = await payment_events(redis)
    assert declined == PaymentDeclined(order_id=order_id, reason="card declined")
    recorded = await payment(http, order_id)
    assert recorded["status"] == "declined" and recorded["reason"] == "card declined"


async def test_a_redelivered_request_captures_once(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    envelope = await publish(redis, requested(order_id))
    await publish(redis, requested(order_id), envelope=envelope)  # the same event id again
    await settled(app, redis)

    assert kinds(await payment_events(redis)) == ["PaymentCaptured"]
    captures = (await http.get("/payments", params={"status": "captured"}, headers=ADMIN)).json()
    assert [p["order_id"] for p in captures["items"]] == [str(order_id)]


async def test_a_second_request_for_an_order_with_another_event_id_captures_nothing_more(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, requested(order_id, amount=2500))
    await publish(redis, requested(order_id, amount=9900))
    await settled(app, redis)

    assert kinds(await payment_events(redis)) == ["PaymentCaptured"]
    assert (await payment(http, order_id))["amount"]["amount"] == 2500


async def test_a_cancelled_order_with_a_capture_is_refunded_once(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, requested(order_id, amount=2500))
    await settled(app, redis)
    cancellation = await publish(redis, cancelled(order_id, reason="stock released"))
    await publish(redis, cancelled(order_id), envelope=cancellation)  # redelivered
    await publish(redis, cancelled(order_id, reason="again"))  # another cancellation of the same order
    await settled(app, redis)

    captured, refunded = await payment_events(redis)
    assert isinstance(refunded, PaymentRefunded)
    assert (refunded.order_id, refunded.payment_id, refunded.amount) == (order_id, captured.payment_id, captured.amount)
    recorded = await payment(http, order_id)
    assert recorded["status"] == "refunded" and recorded["reason"] == "order cancelled: stock released"


async def test_a_request_arriving_after_the_cancellation_captures_nothing_and_is_declined_once(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, cancelled(order_id, reason="payment timed out"))
    await settled(app, redis)
    assert (await payment(http, order_id))["status"] == "cancelled"
    assert await payment_events(redis) == []

    late = await publish(redis, requested(order_id))
    await publish(redis, requested(order_id), envelope=late)  # redelivered
    await publish(redis, requested(order_id))  # asked again, another event id
    await settled(app, redis)

    assert await payment_events(redis) == [PaymentDeclined(order_id=order_id, reason="order cancelled")]
    recorded = await payment(http, order_id)
    assert recorded["status"] == "cancelled" and recorded["amount"] == {"amount": 2500, "currency": "EUR"}
    assert app.state.provider.attempts == 0  # the provider was never asked


async def test_a_cancellation_of_a_declined_payment_does_nothing(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, requested(order_id, card_token="tok_declined"))
    await publish(redis, cancelled(order_id, reason="payment declined"))
    await settled(app, redis)

    assert kinds(await payment_events(redis)) == ["PaymentDeclined"]
    assert (await payment(http, order_id))["status"] == "declined"


async def test_a_confirmed_order_is_none_of_payments_business(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, OrderConfirmed(order_id=order_id, customer_id="c-1", total=Money(1, "EUR")))
    await settled(app, redis)
    assert await payment_events(redis) == []
    assert await payment(http, order_id) is None


async def test_transient_provider_failures_are_retried_until_each_payment_is_captured(make_settings, redis):
    settings = make_settings(provider_failure_rate=0.5, provider_seed=7)
    # Enough deliveries that no payment gives up: with this seed, none fails more than a few times.
    options = dataclasses.replace(FAST, max_deliveries=30)
    async with running(settings, options) as (app, http):
        orders = [uuid.uuid4() for _ in range(8)]
        for order_id in orders:
            await publish(redis, requested(order_id))
        await settled(app, redis)

        provider = app.state.provider
        assert provider.failures > 0 and provider.attempts > len(orders)
        captured = await payment_events(redis)
        assert sorted(e.order_id for e in captured) == sorted(orders)
        assert all(isinstance(e, PaymentCaptured) for e in captured)
        for order_id in orders:
            assert (await payment(http, order_id))["status"] == "captured"
    assert await redis.xlen("orders.events.dlq") == 0


async def test_a_failing_capture_in_a_batch_fails_no_other_capture_of_the_batch(make_settings, redis):
    # A failure rolls the batch back and runs the rest again, asking the provider again for the
    # payments before it: those answers must be the ones already given, not fresh draws (which
    # made the configured rate a much higher one inside every batch that had a failure).
    settings = make_settings(provider_failure_rate=0.3, provider_seed=11)
    options = dataclasses.replace(FAST, max_deliveries=30)
    async with running(settings, options) as (app, http):
        provider = app.state.provider
        orders = [uuid.uuid4() for _ in range(12)]
        for order_id in orders:
            await publish(redis, requested(order_id))
        await settled(app, redis)

        # The failed deliveries of each order: its first attempts, until the first that succeeds.
        expected = 0
        for order_id in orders:
            attempt = 1
            while provider.fails(str(order_id), attempt):
                expected, attempt = expected + 1, attempt + 1
        assert expected > 0 and provider.failures == expected
        assert kinds(await payment_events(redis)) == ["PaymentCaptured"] * len(orders)


async def test_a_request_and_a_cancellation_handled_at_once_on_one_database_refund_without_failing(
    make_settings, database_url
):
    # Two instances: one captures the order's payment while the other handles its cancellation.
    # The cancellation waits on the capture's unique order_id, then must see the capture and refund
    # it, not fail its transaction (a rolled-back batch asks the provider again for all the others).
    handlers = payment_handlers(SimulatedProvider.from_settings(make_settings()))
    outbox = Outbox(source="payments")
    order_id = uuid.uuid4()
    async with migrated(database_url) as db:
        async with db.transaction() as first:
            await handle(handlers, requested(order_id), first, stream=ORDERS_EVENTS, outbox=outbox)

            async def second() -> None:
                async with db.transaction() as session:
                    await handle(handlers, cancelled(order_id), session, stream=ORDERS_EVENTS, outbox=outbox)

            racing = as_another_instance(second())
            await waiting_on_a_lock(db)
        await racing
        [row] = await db.fetch_all(
            sa.select(Payment.__table__.c.status).where(Payment.__table__.c.order_id == order_id)
        )
        published = await db.fetch_all(sa.select(outbox_table.c.envelope).order_by(outbox_table.c.id))
    assert row.status == "refunded"
    assert [decode(envelope).type for (envelope,) in published] == [
        "payments.PaymentCaptured",
        "payments.PaymentRefunded",
    ]


async def test_a_cancellation_and_a_request_handled_at_once_on_one_database_decline_once(make_settings, database_url):
    # The other way round: the cancellation wins, the request waits, then answers "order cancelled".
    provider = SimulatedProvider.from_settings(make_settings())
    handlers = payment_handlers(provider)
    outbox = Outbox(source="payments")
    order_id = uuid.uuid4()
    async with migrated(database_url) as db:
        async with db.transaction() as first:
            await handle(handlers, cancelled(order_id), first, stream=ORDERS_EVENTS, outbox=outbox)

            async def second() -> None:
                async with db.transaction() as session:
                    await handle(handlers, requested(order_id), session, stream=ORDERS_EVENTS, outbox=outbox)

            racing = as_another_instance(second())
            await waiting_on_a_lock(db)
        await racing
        [row] = await db.fetch_all(
            sa.select(Payment.__table__.c.status).where(Payment.__table__.c.order_id == order_id)
        )
        published = await db.fetch_all(sa.select(outbox_table.c.envelope).order_by(outbox_table.c.id))
    assert row.status == "cancelled"
    assert [decode(envelope).type for (envelope,) in published] == ["payments.PaymentDeclined"]
