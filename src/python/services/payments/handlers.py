"""What payments does with orders.events: capture or decline a requested payment, refund a cancelled order's.

Each handler runs in the consumer's batch transaction, with the inbox (an exact redelivery never
reaches it) and the outbox (its follow-up event commits with its change). The rules come from
``domain``; this module reads and writes the order's payment row accordingly.

Two instances on one PostgreSQL database may handle two events of one order at once. The unique
order_id settles it: the second insert waits for the first transaction and, once it has
committed, skips (ON CONFLICT DO NOTHING); the handler then reads the row the other one wrote
and decides again from it. A plain insert would fail instead, rolling back the consumer's whole
batch and running it again, every other capture of the batch included. Updates are conditional
on the status they change, so a refund or a decline of a cancelled order is answered once even
when two cancellations race.

The provider is called inside the batch transaction (the consumer opens it, with the inbox
claim, before any handler runs): its latency holds the transaction open, and on SQLite the
file's write lock. See PaymentsSettings.provider_latency_ms for what that bounds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import (
    PAYMENTS_EVENTS,
    OrderCancelled,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentRequested,
)
from flotilla_kit.db import insert_unless_conflicting
from flotilla_streams.consumer import HandlerContext, Handlers
from payments import domain
from payments.models import Payment
from payments.provider import SimulatedProvider

_payments = cast(sa.Table, Payment.__table__)
_columns = _payments.c
# A first decision can lose its insert to another instance; the second reads that instance's row.
_DECISIONS = 2


def payment_handlers(provider: SimulatedProvider) -> Handlers[Any]:
    """The handlers of the "payments" group on orders.events (OrderConfirmed is not theirs: acked unread)."""
    handlers: Handlers[Any] = Handlers()

    @handlers.on(PaymentRequested)
    async def on_payment_requested(event: PaymentRequested, ctx: HandlerContext) -> None:
        session = _session(ctx)
        for _ in range(_DECISIONS):
            row = await _find(session, event.order_id)
            action = domain.on_payment_requested(_existing(row))
            if action is domain.OnRequest.NOTHING:
                return
            if action is domain.OnRequest.DECLINE_CANCELLED:
                await _decline_cancelled(event, ctx)
                return
            # Only an order without a payment reaches the provider: an answered one is never charged again.
            # The order id is the provider's idempotency key, as a real provider's API asks for.
            decision = await provider.capture(
                event.amount, event.card_token, idempotency_key=str(event.order_id), attempt=ctx.deliveries
            )
            payment_id = uuid.uuid4()
            status = "captured" if decision.captured else "declined"
            row_values = _row(payment_id, event.order_id, event.customer_id, status, event.amount, decision.reason)
            if not await _insert(session, {**row_values, "requested_at": row_values["created_at"]}):
                continue
            if decision.captured:
                captured = PaymentCaptured(order_id=event.order_id, payment_id=payment_id, amount=event.amount)
                await ctx.publish(PAYMENTS_EVENTS, captured)
            else:
                await ctx.publish(PAYMENTS_EVENTS, PaymentDeclined(order_id=event.order_id, reason=decision.reason))
            return
        raise _Undecided(event.order_id)

    @handlers.on(OrderCancelled)
    async def on_order_cancelled(event: OrderCancelled, ctx: HandlerContext) -> None:
        session = _session(ctx)
        reason = domain.cancellation_reason(event.reason)
        for _ in range(_DECISIONS):
            row = await _find(session, event.order_id)
            action = domain.on_order_cancelled(_existing(row))
            if action is domain.OnCancel.REFUND:
                await _refund(row, reason, ctx)
                return
            if action is domain.OnCancel.NOTHING:
                return
            # Recorded before any request: its amount is unknown until a late request brings one.
            row_values = _row(uuid.uuid4(), event.order_id, event.customer_id, "cancelled", domain.NO_AMOUNT, reason)
            if await _insert(session, row_values):
                return
        raise _Undecided(event.order_id)

    return handlers


class _Undecided(RuntimeError):
    """An insert skipped for a row that a read then does not find: a bug, retried by the consumer."""

    def __init__(self, order_id: uuid.UUID) -> None:
        super().__init__(f"no payment row for order {order_id} after its insert met one")


def _row(
    payment_id: uuid.UUID, order_id: uuid.UUID, customer_id: str, status: str, amount: Money, reason: str
) -> dict[str, Any]:
    """A new payment row's values; ``requested_at`` stays null (no request answered yet) unless set."""
    now = datetime.now(UTC)
    return {
        "id": payment_id,
        "order_id": order_id,
        "customer_id": customer_id,
        "status": status,
        "amount": amount.amount,
        "currency": amount.currency,
        "reason": reason,
        "requested_at": None,
        "created_at": now,
        "updated_at": now,
    }


async def _insert(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the order's payment row; False when the order has one already (committed meanwhile)."""
    statement = insert_unless_conflicting(session, _payments, on=["order_id"]).values(values)
    return await session.scalar(statement.returning(_columns.id)) is not None


async def _decline_cancelled(event: PaymentRequested, ctx: HandlerContext) -> None:
    """Answer a request for an order cancelled before it: once, whoever else answers it at the same time."""
    now = datetime.now(UTC)
    answered = await _session(ctx).execute(
        sa.update(_payments)
        .where(_columns.order_id == event.order_id, _columns.status == "cancelled")
        .where(_columns.requested_at.is_(None))
        .values(requested_at=now, amount=event.amount.amount, currency=event.amount.currency, updated_at=now)
    )
    if answered.rowcount:  # type: ignore[attr-defined]
        await ctx.publish(PAYMENTS_EVENTS, PaymentDeclined(order_id=event.order_id, reason=domain.ORDER_CANCELLED))


async def _refund(row: Any, reason: str, ctx: HandlerContext) -> None:
    """Give a capture back: once, whoever else refunds it at the same time."""
    refunded = await _session(ctx).execute(
        sa.update(_payments)
        .where(_columns.order_id == row.order_id, _columns.status == "captured")
        .values(status="refunded", reason=reason, updated_at=datetime.now(UTC))
    )
    if refunded.rowcount:  # type: ignore[attr-defined]
        amount = Money(row.amount, row.currency)
        await ctx.publish(PAYMENTS_EVENTS, PaymentRefunded(order_id=row.order_id, payment_id=row.id, amount=amount))


def _session(ctx: HandlerContext) -> AsyncSession:
    if ctx.session is None:  # the group is built with the inbox; a bare consumer would be a wiring bug
        raise RuntimeError("payments handlers need the consumer's transaction")
    return ctx.session


async def _find(session: AsyncSession, order_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(_payments).where(_columns.order_id == order_id))).first()


def _existing(row: Any) -> domain.Existing | None:
    return None if row is None else domain.Existing(status=row.status, answered=row.requested_at is not None)
