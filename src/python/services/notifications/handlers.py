"""What notifications does with orders.events: record one notification per order and outcome.

Handlers run in the consumer's batch transaction with the inbox, so an exact redelivery never
reaches them. Another event of the same outcome (a new event id for an order already told) meets
the unique (order_id, kind) and records nothing. The insert skips the conflict instead of failing
on it: when two instances race on one PostgreSQL database, the second waits for the first and
skips, where a failed insert would roll back its whole batch and run it again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa

from flotilla_contracts.events import OrderCancelled, OrderConfirmed
from flotilla_kit.db import insert_unless_conflicting
from flotilla_streams.consumer import HandlerContext, Handlers
from notifications import domain
from notifications.models import Notification

_notifications = cast(sa.Table, Notification.__table__)
_columns = _notifications.c


def notification_handlers() -> Handlers[Any]:
    """The handlers of the "notifications" group on orders.events (the other events are acked unread)."""
    handlers: Handlers[Any] = Handlers()

    @handlers.on(OrderConfirmed)
    async def on_order_confirmed(event: OrderConfirmed, ctx: HandlerContext) -> None:
        await _record(event, ctx)

    @handlers.on(OrderCancelled)
    async def on_order_cancelled(event: OrderCancelled, ctx: HandlerContext) -> None:
        await _record(event, ctx)

    return handlers


async def _record(event: OrderConfirmed | OrderCancelled, ctx: HandlerContext) -> None:
    session = ctx.session
    if session is None:  # the group is built with the inbox; a bare consumer would be a wiring bug
        raise RuntimeError("notifications handlers need the consumer's transaction")
    new = domain.notification_for(event)
    await session.execute(
        insert_unless_conflicting(session, _notifications, on=["order_id", "kind"]).values(
            id=uuid.uuid4(),
            order_id=event.order_id,
            customer_id=event.customer_id,
            kind=new.kind,
            message=new.message,
            created_at=datetime.now(UTC),
        )
    )
