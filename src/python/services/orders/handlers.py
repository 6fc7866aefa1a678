"""The saga's event handlers (consumer group "orders" on inventory.events and payments.events).

Each runs in the consumer's transaction with the inbox (a redelivered event is skipped), and the
transition it makes is guarded by the status it expects (orders.saga), so a duplicate or an
out-of-order event changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.events import PaymentCaptured, PaymentDeclined, PaymentRefunded, StockRejected, StockReserved
from flotilla_streams.consumer import HandlerContext, Handlers
from orders.domain import SagaEvent
from orders.saga import Saga


def saga_handlers(saga: Saga) -> Handlers[Any]:
    handlers: Handlers[Any] = Handlers()

    @handlers.on(StockReserved)
    async def stock_reserved(event: StockReserved, ctx: HandlerContext) -> None:
        await saga.advance(_session(ctx), event.order_id, SagaEvent.STOCK_RESERVED, publish=ctx.publish)

    @handlers.on(StockRejected)
    async def stock_rejected(event: StockRejected, ctx: HandlerContext) -> None:
        await saga.advance(
            _session(ctx),
            event.order_id,
            SagaEvent.STOCK_REJECTED,
            publish=ctx.publish,
            detail=event.reason,
            reason=event.reason,
        )

    @handlers.on(PaymentCaptured)
    async def payment_captured(event: PaymentCaptured, ctx: HandlerContext) -> None:
        amount = f"{event.amount.amount} {event.amount.currency}"
        await saga.advance(
            _session(ctx),
            event.order_id,
            SagaEvent.PAYMENT_CAPTURED,
            publish=ctx.publish,
            detail=f"payment {event.payment_id} captured ({amount})",
        )

    @handlers.on(PaymentDeclined)
    async def payment_declined(event: PaymentDeclined, ctx: HandlerContext) -> None:
        await saga.advance(
            _session(ctx),
            event.order_id,
            SagaEvent.PAYMENT_DECLINED,
            publish=ctx.publish,
            detail=event.reason,
            reason=event.reason,
        )

    @handlers.on(PaymentRefunded)
    async def payment_refunded(event: PaymentRefunded, ctx: HandlerContext) -> None:
        amount = f"{event.amount.amount} {event.amount.currency}"
        await saga.advance(
            _session(ctx),
            event.order_id,
            SagaEvent.PAYMENT_REFUNDED,
            publish=ctx.publish,
            detail=f"payment {event.payment_id} refunded ({amount})",
        )

    return handlers


def _session(ctx: HandlerContext) -> AsyncSession:
    if ctx.session is None:  # the group runs with the inbox, in a transaction; a bare consumer is a wiring bug
        raise RuntimeError("the saga's handlers need the consumer's transaction")
    return ctx.session
