"""Inventory's event handlers: stock rows for new products, and reservations through the order saga.

Each runs in the consumer's transaction with the inbox (a redelivered event has no second effect)
and publishes its answers through the outbox in that same transaction. Events of different streams
arrive in any order and more than once, so each handler also decides from the order's reservation
row: one row per order, whatever its status, is what the order's events agree on.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.events import (
    INVENTORY_EVENTS,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    ProductCreated,
    StockRejected,
    StockReserved,
)
from flotilla_streams.consumer import HandlerContext, Handlers
from inventory import domain, store
from inventory.domain import Action

log = logging.getLogger(__name__)


def build_handlers() -> Handlers[Any]:
    """The handlers of the "inventory" consumer group (ORDERS_EVENTS and CATALOG_EVENTS).

    ProductPriceChanged and ProductDeactivated have no handler: the consumer acks them unhandled
    (stock stays; orders refuses inactive products itself)."""
    handlers: Handlers[Any] = Handlers()
    handlers.on(ProductCreated)(on_product_created)
    handlers.on(OrderPlaced)(on_order_placed)
    handlers.on(OrderCancelled)(on_order_cancelled)
    handlers.on(OrderConfirmed)(on_order_confirmed)
    return handlers


def _session(ctx: HandlerContext) -> AsyncSession:
    if ctx.session is None:
        raise RuntimeError("inventory's handlers run in a database transaction (a consumer with the inbox)")
    return ctx.session


async def on_product_created(event: ProductCreated, ctx: HandlerContext) -> None:
    """A new product gets a stock row with nothing on hand (kept as it is if an admin made one first)."""
    await store.ensure_stock(_session(ctx), event.product_id, datetime.now(UTC))


async def on_order_placed(event: OrderPlaced, ctx: HandlerContext) -> None:
    """Reserve every line of the order, or none: answers StockReserved or StockRejected.

    An order with a reservation row in any status was decided before, or cancelled before it got
    here (a 'released' tombstone): then nothing happens and nothing is answered again.
    """
    session = _session(ctx)
    now = datetime.now(UTC)
    wanted = domain.sum_lines(event.lines)
    # Claimed first: this row, not a read of it, is what keeps two consumers from both deciding.
    if not await store.claim_reservation(session, event.order_id, status="reserved", reason="", now=now):
        log.info("order already has a reservation, nothing to do", extra={"order_id": str(event.order_id)})
        return
    locked = await store.lock_stock(session, wanted)
    short = domain.shortages(wanted, {product: row.on_hand - row.reserved for product, row in locked.items()})
    if short:
        reason = domain.rejection_reason(short)
        await store.set_reservation_status(session, event.order_id, status="rejected", reason=reason, now=now)
        await ctx.publish(INVENTORY_EVENTS, StockRejected(order_id=event.order_id, reason=reason, shortages=short))
        return
    for product_id, quantity in wanted.items():
        await store.reserve_units(session, product_id, quantity, now)
    await store.add_reservation_lines(session, event.order_id, wanted)
    await ctx.publish(INVENTORY_EVENTS, StockReserved(order_id=event.order_id))


async def on_order_cancelled(event: OrderCancelled, ctx: HandlerContext) -> None:
    """Release what the order holds; if it holds nothing yet, make sure it never will."""
    session = _session(ctx)
    now = datetime.now(UTC)
    row = await store.lock_reservation(session, event.order_id)
    action = domain.on_order_cancelled(row.status if row else None)
    if action is Action.TOMBSTONE:
        reason = domain.CANCELLED_BEFORE_RESERVATION
        if await store.claim_reservation(session, event.order_id, status="released", reason=reason, now=now):
            return
        # An OrderPlaced handled at the same time claimed the order first (and has committed).
        row = await store.lock_reservation(session, event.order_id)
        assert row is not None
        action = domain.on_order_cancelled(row.status)
    if action is Action.RELEASE:
        for product_id, quantity in (await store.reservation_units(session, event.order_id)).items():
            await store.release_units(session, product_id, quantity, now)
        reason = domain.released_reason(event.reason)
        await store.set_reservation_status(session, event.order_id, status="released", reason=reason, now=now)
    elif row is not None and row.status == "committed":
        # The saga never cancels a confirmed order; if it ever does, the units have left already.
        log.warning("cancelled order was committed, left as it is", extra={"order_id": str(event.order_id)})


async def on_order_confirmed(event: OrderConfirmed, ctx: HandlerContext) -> None:
    """The order's held units leave the stock: on_hand and reserved go down, a movement per product."""
    session = _session(ctx)
    now = datetime.now(UTC)
    row = await store.lock_reservation(session, event.order_id)
    status = row.status if row else None
    if domain.on_order_confirmed(status) is not Action.COMMIT:
        if status != "committed":
            log.warning(
                "confirmed order has no reservation to commit",
                extra={"order_id": str(event.order_id), "status": status},
            )
        return
    for product_id, quantity in (await store.reservation_units(session, event.order_id)).items():
        await store.commit_units(session, product_id, quantity, order_id=event.order_id, now=now)
    await store.set_reservation_status(session, event.order_id, status="committed", reason="", now=now)
