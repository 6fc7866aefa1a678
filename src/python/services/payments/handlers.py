"""What payments does with orders.events: capture or decline a requested payment, refund a cancelled order's.

Each handler runs in the consumer's batch transaction, with the inbox (an exact redelivery never
reaches it) and the outbox (its follow-up event commits with its change). The rules come from
``domain``; this module reads and writes the order's payment row accordingly.

Two instances on one database may handle two events of one order at once. The unique order_id
makes the second insert fail its transaction; the consumer retries that event after a backoff, and
the retry finds the row. Updates are conditional on the status they change, so a refund or a
decline of a cancelled order is answered once even when two cancellations race.
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
from flotilla_streams.consumer import HandlerContext, Handlers
from payments import domain
from payments.models import Payment
from payments.provider import SimulatedProvider

_payments = cast(sa.Table, Payment.__table__)
_columns = _payments.c


def payment_handlers(provider: SimulatedProvider) -> Handlers[Any]:
    """The handlers of the "payments" group on orders.events (OrderConfirmed is not theirs: acked unread)."""
    handlers: Handlers[Any] = Handlers()

    @handlers.on(PaymentRequested)
    async def on_payment_requested(event: PaymentRequested, ctx: HandlerContext) -> None:
        session = _session(ctx)
        row = await _find(session, event.order_id)
        action = domain.on_payment_requested(_existing(row))
        if action is domain.OnRequest.NOTHING:
            return
        now = datetime.now(UTC)
        if action is domain.OnRequest.DECLINE_CANCELLED:
            answered = await session.execute(
                sa.update(_payments)
                .where(_columns.order_id == event.order_id, _columns.status == "cancelled")
                .where(_columns.requested_at.is_(None))
                .values(requested_at=now, amount=event.amount.amount, currency=event.amount.currency, updated_at=now)
            )
            if answered.rowcount:  # type: ignore[attr-defined]
                await ctx.publish(
                    PAYMENTS_EVENTS, PaymentDeclined(order_id=event.order_id, reason=domain.ORDER_CANCELLED)
                )
            return
        # The provider is asked only for an order without a payment: an answered order is never charged again.
        # Its latency is spent inside the consumer's batch transaction, which the inbox has opened
        # already (on SQLite it holds the write lock meanwhile): the consumer has no step before it.
        decision = await provider.capture(event.amount, event.card_token)
        payment_id = uuid.uuid4()
        await session.execute(
            sa.insert(_payments).values(
                id=payment_id,
                order_id=event.order_id,
                customer_id=event.customer_id,
                status="captured" if decision.captured else "declined",
                amount=event.amount.amount,
                currency=event.amount.currency,
                reason=decision.reason,
                requested_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        if decision.captured:
            captured = PaymentCaptured(order_id=event.order_id, payment_id=payment_id, amount=event.amount)
            await ctx.publish(PAYMENTS_EVENTS, captured)
        else:
            await ctx.publish(PAYMENTS_EVENTS, PaymentDeclined(order_id=event.order_id, reason=decision.reason))

    @handlers.on(OrderCancelled)
    async def on_order_cancelled(event: OrderCancelled, ctx: HandlerContext) -> None:
        session = _session(ctx)
        row = await _find(session, event.order_id)
        action = domain.on_order_cancelled(_existing(row))
        now = datetime.now(UTC)
        reason = domain.cancellation_reason(event.reason)
        if action is domain.OnCancel.REFUND:
            assert row is not None
            refunded = await session.execute(
                sa.update(_payments)
                .where(_columns.order_id == event.order_id, _columns.status == "captured")
                .values(status="refunded", reason=reason, updated_at=now)
            )
            if refunded.rowcount:  # type: ignore[attr-defined]
                amount = Money(row.amount, row.currency)
                await ctx.publish(
                    PAYMENTS_EVENTS, PaymentRefunded(order_id=event.order_id, payment_id=row.id, amount=amount)
                )
        elif action is domain.OnCancel.RECORD_CANCELLED:
            await session.execute(
                sa.insert(_payments).values(
                    id=uuid.uuid4(),
                    order_id=event.order_id,
                    customer_id=event.customer_id,
                    status="cancelled",
                    amount=domain.NO_AMOUNT.amount,
                    currency=domain.NO_AMOUNT.currency,
                    reason=reason,
                    requested_at=None,
                    created_at=now,
                    updated_at=now,
                )
            )

    return handlers


def _session(ctx: HandlerContext) -> AsyncSession:
    if ctx.session is None:  # the group is built with the inbox; a bare consumer would be a wiring bug
        raise RuntimeError("payments handlers need the consumer's transaction")
    return ctx.session


async def _find(session: AsyncSession, order_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(_payments).where(_columns.order_id == order_id))).first()


def _existing(row: Any) -> domain.Existing | None:
    return None if row is None else domain.Existing(status=row.status, answered=row.requested_at is not None)
