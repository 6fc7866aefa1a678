"""The saga, driven by publishing inventory and payments events into the real Redis, as those services would.

Each test waits, with a deadline, for the order's status and for the events orders publishes
(XRANGE on orders.events), and states its outcome as counts of those events.
"""

import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import (
    INVENTORY_EVENTS,
    PAYMENTS_EVENTS,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    StockRejected,
    StockReserved,
)
from flotilla_kit.testing.waiting import eventually
from flotilla_streams.envelope import ENVELOPE_FIELD, encode, wrap
from flotilla_streams.stats import group_stats
from orders.tests.conftest import FakeClock, customer, new_key, order_body, publish, published


async def _place(client, catalog, *, amount=450, card_token="tok_visa"):
    product = catalog.product(amount=amount)
    body = order_body(product, quantity=2, card_token=card_token)
    response = await client.post("/orders", json=body, headers={**customer(), **new_key()})
    assert response.status_code == 201, response.text
    return response.json()


async def _order(client, order_id):
    return (await client.get(f"/orders/{order_id}", headers=customer())).json()


async def _until_status(client, order_id, status):
    async def reached():
        return (await _order(client, order_id))["status"] == status

    await eventually(reached, what=f"order {status}")
    return await _order(client, order_id)


async def _until_events(redis, order_id, *types):
    """Wait until orders has published exactly ``types`` about the order (in this order)."""

    async def seen():
        return [kind for kind, _ in await published(redis, order_id)] == [f"orders.{t}" for t in types]

    await eventually(seen, what=f"events {types}")
    return dict(await published(redis, order_id))


def _money(order):
    return Money(order["total"]["amount"], order["total"]["currency"])


def _steps(order):
    return [step["step"] for step in order["history"]]


async def test_a_reserved_and_paid_order_ends_confirmed(start_orders, catalog, redis):
    async with start_orders() as client:
        order = await _place(client, catalog, card_token="tok_mastercard")
        order_id = uuid.UUID(order["id"])
        await _until_events(redis, order["id"], "OrderPlaced")
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=order_id), source="inventory")
        waiting = await _until_status(client, order["id"], "awaiting_payment")
        assert waiting["step_deadline"] is not None and waiting["step_deadline"] > order["step_deadline"]
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested")
        request = events["orders.PaymentRequested"]
        assert request["amount"] == order["total"] and request["card_token"] == "tok_mastercard"
        assert request["customer_id"] == "alice"
        await publish(
            redis,
            PAYMENTS_EVENTS,
            PaymentCaptured(order_id=order_id, payment_id=uuid.uuid4(), amount=_money(order)),
            source="payments",
        )
        confirmed = await _until_status(client, order["id"], "confirmed")
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested", "OrderConfirmed")
        assert events["orders.OrderConfirmed"]["total"] == order["total"]
    assert _steps(confirmed) == ["placed", "stock_reserved", "payment_captured"]
    assert confirmed["step_deadline"] is None and confirmed["cancel_reason"] is None


async def test_rejected_stock_cancels_the_order_with_the_reason(start_orders, catalog, redis):
    async with start_orders() as client:
        order = await _place(client, catalog)
        await publish(redis, INVENTORY_EVENTS, StockRejected(order_id=uuid.UUID(order["id"]), reason="out of stock"))
        cancelled = await _until_status(client, order["id"], "cancelled")
        events = await _until_events(redis, order["id"], "OrderPlaced", "OrderCancelled")
    assert cancelled["cancel_reason"] == "out of stock"
    assert events["orders.OrderCancelled"]["reason"] == "out of stock"
    assert _steps(cancelled) == ["placed", "cancelled"]
    assert cancelled["step_deadline"] is None


async def test_a_declined_payment_cancels_the_order(start_orders, catalog, redis):
    async with start_orders() as client:
        order = await _place(client, catalog)
        order_id = uuid.UUID(order["id"])
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=order_id))
        await _until_status(client, order["id"], "awaiting_payment")
        await publish(redis, PAYMENTS_EVENTS, PaymentDeclined(order_id=order_id, reason="card declined"))
        cancelled = await _until_status(client, order["id"], "cancelled")
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested", "OrderCancelled")
    assert cancelled["cancel_reason"] == "card declined"
    assert events["orders.OrderCancelled"]["reason"] == "card declined"
    assert _steps(cancelled) == ["placed", "stock_reserved", "cancelled"]


async def test_a_payment_step_past_its_deadline_is_cancelled_with_order_cancelled(start_orders, catalog, redis):
    clock = FakeClock()
    async with start_orders(clock=clock, saga_step_timeout_seconds=30) as client:
        order = await _place(client, catalog)
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=uuid.UUID(order["id"])))
        await _until_status(client, order["id"], "awaiting_payment")
        clock.advance(29)  # not yet: the payment step's deadline is 30 s after the stock answer
        await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested")
        assert (await _order(client, order["id"]))["status"] == "awaiting_payment"
        clock.advance(2)
        cancelled = await _until_status(client, order["id"], "cancelled")
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested", "OrderCancelled")
    assert cancelled["cancel_reason"] == "payment step timed out"
    assert events["orders.OrderCancelled"]["reason"] == "payment step timed out"


async def test_a_stock_step_past_its_deadline_is_cancelled(start_orders, catalog, redis):
    clock = FakeClock()
    async with start_orders(clock=clock, saga_step_timeout_seconds=5) as client:
        order = await _place(client, catalog)
        clock.advance(5)
        cancelled = await _until_status(client, order["id"], "cancelled")
        await _until_events(redis, order["id"], "OrderPlaced", "OrderCancelled")
    assert cancelled["cancel_reason"] == "stock step timed out"


async def test_late_answers_after_cancellation_are_recorded_and_change_nothing(start_orders, catalog, redis):
    clock = FakeClock()
    async with start_orders(clock=clock, saga_step_timeout_seconds=5) as client:
        order = await _place(client, catalog)
        order_id = uuid.UUID(order["id"])
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=order_id))
        await _until_status(client, order["id"], "awaiting_payment")
        clock.advance(6)
        await _until_status(client, order["id"], "cancelled")
        # The capture that was on its way, then the refund payments makes on OrderCancelled.
        payment = uuid.uuid4()
        await publish(
            redis, PAYMENTS_EVENTS, PaymentCaptured(order_id=order_id, payment_id=payment, amount=_money(order))
        )
        await publish(
            redis, PAYMENTS_EVENTS, PaymentRefunded(order_id=order_id, payment_id=payment, amount=_money(order))
        )
        # And a stock answer that comes after all (inventory releases it on OrderCancelled).
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=order_id))

        async def recorded():
            return len((await _order(client, order["id"]))["history"]) == 6

        await eventually(recorded, what="late answers in the history")
        final = await _order(client, order["id"])
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested", "OrderCancelled")
    assert final["status"] == "cancelled" and final["cancel_reason"] == "payment step timed out"
    assert Counter(_steps(final)) == {
        "placed": 1,
        "stock_reserved": 1,
        "cancelled": 1,
        "payment_captured_after_cancellation": 1,
        "payment_refunded": 1,
        "stock_reserved_after_cancellation": 1,
    }
    late = {step["step"]: step["detail"] for step in final["history"]}
    assert late["payment_captured_after_cancellation"].startswith(
        "payment captured after cancellation; payments refunds it on OrderCancelled"
    )
    assert str(payment) in late["payment_refunded"]
    assert len(events) == 3


async def test_duplicate_and_redelivered_events_change_nothing(start_orders, catalog, redis):
    async with start_orders() as client:
        order = await _place(client, catalog)
        order_id = uuid.UUID(order["id"])
        reserved = wrap(StockReserved(order_id=order_id), source="inventory")
        for _ in range(2):  # one event delivered twice (the inbox), then the same answer sent again (the guard)
            await redis.xadd(INVENTORY_EVENTS, {ENVELOPE_FIELD: encode(reserved)})
        await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=order_id))
        await _until_status(client, order["id"], "awaiting_payment")
        captured = PaymentCaptured(order_id=order_id, payment_id=uuid.uuid4(), amount=_money(order))
        await publish(redis, PAYMENTS_EVENTS, captured)
        await publish(redis, PAYMENTS_EVENTS, captured)
        # Out of order: answers to steps the order is past.
        await publish(redis, INVENTORY_EVENTS, StockRejected(order_id=order_id, reason="too late"))
        await publish(redis, PAYMENTS_EVENTS, PaymentDeclined(order_id=order_id, reason="too late"))
        await _until_status(client, order["id"], "confirmed")

        async def all_handled():
            stats = [await group_stats(redis, stream, "orders") for stream in (INVENTORY_EVENTS, PAYMENTS_EVENTS)]
            return all(s is not None and s.pending == 0 and s.lag == 0 and s.dlq_length == 0 for s in stats)

        await eventually(all_handled, what="every event handled")
        final = await _order(client, order["id"])
        events = await _until_events(redis, order["id"], "OrderPlaced", "PaymentRequested", "OrderConfirmed")
    assert final["status"] == "confirmed" and final["cancel_reason"] is None
    assert _steps(final) == ["placed", "stock_reserved", "payment_captured"]
    assert len(events) == 3


async def test_a_restart_mid_saga_resumes_every_saga(start_orders, catalog, redis):
    clock = FakeClock()
    instance = {"clock": clock, "saga_step_timeout_seconds": 30, "instance_id": "orders-a"}  # the same after restart
    async with start_orders(**instance) as client:
        unanswered = await _place(client, catalog)
        clock.advance(20)
        answered = await _place(client, catalog)
        await _until_events(redis, answered["id"], "OrderPlaced")
    # While orders is down: one order's stock is reserved, the other's answer is lost, and time passes
    # beyond the lost one's deadline (not the other's).
    await publish(redis, INVENTORY_EVENTS, StockReserved(order_id=uuid.UUID(answered["id"])))
    clock.advance(15)
    async with start_orders(**instance) as client:
        lost = await _until_status(client, unanswered["id"], "cancelled")
        assert lost["cancel_reason"] == "stock step timed out"
        await _until_status(client, answered["id"], "awaiting_payment")
        await publish(
            redis,
            PAYMENTS_EVENTS,
            PaymentCaptured(order_id=uuid.UUID(answered["id"]), payment_id=uuid.uuid4(), amount=_money(answered)),
        )
        await _until_status(client, answered["id"], "confirmed")
        await _until_events(redis, answered["id"], "OrderPlaced", "PaymentRequested", "OrderConfirmed")
        await _until_events(redis, unanswered["id"], "OrderPlaced", "OrderCancelled")


async def test_a_failing_sweeper_fails_readiness(start_orders, redis_server):
    clock = FakeClock()
    async with start_orders(clock=clock) as client:
        clock.broken = True

        async def not_ready():
            answer = await client.get("/readyz")
            return answer.status_code == 503 and "sweeper" in answer.json()["detail"]

        await eventually(not_ready, what="not ready")
        clock.broken = False

        async def ready():
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, what="ready again")


async def test_two_instances_sweeping_one_database_cancel_each_overdue_order_once(
    start_orders, catalog, redis, database_url
):
    if database_url.startswith("sqlite"):
        # Instances share a PostgreSQL database; a SQLite file has one process (and one outbox relay).
        pytest.skip("two instances share a database on PostgreSQL only")
    clock = FakeClock()
    async with (
        start_orders(clock=clock, instance_id="orders-a") as first,
        start_orders(clock=clock, instance_id="orders-b") as second,
    ):
        orders = [await _place(client, catalog) for client in (first, second) for _ in range(5)]
        clock.advance(31)
        for order in orders:
            await _until_status(first, order["id"], "cancelled")
        for order in orders:
            await _until_events(redis, order["id"], "OrderPlaced", "OrderCancelled")
        assert [_steps(await _order(second, order["id"])) for order in orders] == [["placed", "cancelled"]] * 10
    for order in orders:  # each relay flushed on stop: still one OrderCancelled per order
        assert [kind for kind, _ in await published(redis, order["id"])] == [
            "orders.OrderPlaced",
            "orders.OrderCancelled",
        ]


async def test_deadlines_hold_with_a_clock_in_another_time_zone(start_orders, catalog, redis):
    # An aware clock need not be in UTC; SQLite keeps a time without its offset, so the service must
    # store UTC, or a deadline read back would be two hours off and the sweeper would never reach it.
    utc = FakeClock()
    paris_summer = timezone(timedelta(hours=2))
    async with start_orders(clock=lambda: utc().astimezone(paris_summer), saga_step_timeout_seconds=5) as client:
        order = await _place(client, catalog)
        assert datetime.fromisoformat(order["created_at"]) == utc.now
        assert datetime.fromisoformat((await _order(client, order["id"]))["created_at"]) == utc.now
        utc.advance(5)
        cancelled = await _until_status(client, order["id"], "cancelled")
    assert cancelled["cancel_reason"] == "stock step timed out"
