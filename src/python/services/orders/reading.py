"""Reading orders with their lines and history: one order, a customer's orders page by page, the sagas by state."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.catalog import Money
from flotilla_contracts.orders import FINAL_STATUSES, Order, OrderLine, OrderPage, OrderStep, SagaCounts
from flotilla_kit.db import Database
from flotilla_kit.pagination import as_utc, created_cursor, created_page
from orders.models import Order as OrderRow
from orders.models import OrderLine as LineRow
from orders.models import OrderStep as StepRow

_orders = cast(sa.Table, OrderRow.__table__)
_lines = cast(sa.Table, LineRow.__table__)
_steps = cast(sa.Table, StepRow.__table__)


async def find_order(db: Database, order_id: uuid.UUID, *, customer_id: str | None) -> Order | None:
    """The order, if it is ``customer_id``'s (any customer's for None)."""
    query = sa.select(_orders).where(_orders.c.id == order_id)
    if customer_id is not None:
        query = query.where(_orders.c.customer_id == customer_id)
    async with db.reader() as session:  # one snapshot: the history agrees with the status
        row = (await session.execute(query)).first()
        return (await _with_details(session, [row]))[0] if row else None


async def customer_orders(db: Database, customer_id: str, *, limit: int, cursor: str | None) -> OrderPage:
    """A page of the customer's orders, newest first; raises InvalidCursor for a cursor not issued here."""
    return await _page(db, sa.select(_orders).where(_orders.c.customer_id == customer_id), limit, cursor)


async def sagas(
    db: Database, *, status: str | None, stuck: bool, now: datetime, limit: int, cursor: str | None
) -> OrderPage:
    """Every customer's orders, newest first: in ``status`` if given, only those past their step's
    deadline if ``stuck``; raises InvalidCursor for a cursor not issued here."""
    query = sa.select(_orders)
    if status is not None:
        query = query.where(_orders.c.status == status)
    if stuck:
        query = query.where(_orders.c.step_deadline < now)
    return await _page(db, query, limit, cursor)


async def saga_counts(db: Database, *, now: datetime) -> SagaCounts:
    """Orders per state, and the stuck ones (waiting past their step deadline)."""
    async with db.reader() as session:
        counted = await session.execute(sa.select(_orders.c.status, sa.func.count()).group_by(_orders.c.status))
        stuck = await session.scalar(
            sa.select(sa.func.count()).where(_orders.c.step_deadline < now, _orders.c.status.not_in(FINAL_STATUSES))
        )
    return SagaCounts(by_status={status: count for status, count in counted}, stuck=stuck or 0)


async def _page(db: Database, selection: sa.Select[Any], limit: int, cursor: str | None) -> OrderPage:
    query = created_page(selection, _orders.c.created_at, _orders.c.id, cursor, limit, newest_first=True)
    async with db.reader() as session:
        rows = (await session.execute(query)).all()
        items = await _with_details(session, rows[:limit])
    last = items[-1] if len(rows) > limit else None
    next_cursor = created_cursor(last.created_at, last.id) if last else None
    return OrderPage(items=items, next_cursor=next_cursor)


async def _with_details(session: AsyncSession, rows: Sequence[Any]) -> list[Order]:
    """The orders of ``rows`` with their lines and history (two queries for the whole page)."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    lines: dict[uuid.UUID, list[OrderLine]] = defaultdict(list)
    for line in await session.execute(
        sa.select(_lines).where(_lines.c.order_id.in_(ids)).order_by(_lines.c.order_id, _lines.c.line_no)
    ):
        lines[line.order_id].append(
            OrderLine(
                product_id=line.product_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=Money(line.unit_price_amount, line.currency),
            )
        )
    history: dict[uuid.UUID, list[OrderStep]] = defaultdict(list)
    for step in await session.execute(sa.select(_steps).where(_steps.c.order_id.in_(ids)).order_by(_steps.c.id)):
        history[step.order_id].append(OrderStep(step=step.step, at=as_utc(step.at), detail=step.detail))
    return [
        Order(
            id=row.id,
            customer_id=row.customer_id,
            status=row.status,
            lines=lines[row.id],
            total=Money(row.total_amount, row.currency),
            cancel_reason=row.cancel_reason,
            step_deadline=as_utc(row.step_deadline) if row.step_deadline else None,
            history=history[row.id],
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )
        for row in rows
    ]
