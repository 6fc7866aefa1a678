"""The sweeper on a real database (SQLite and PostgreSQL), driven pass by pass."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import pytest
import sqlalchemy as sa

from flotilla_kit.testing.waiting import eventually
from flotilla_streams.outbox import Outbox
from orders.models import Order
from orders.saga import Saga
from orders.sweeper import Sweeper, sweeper_check
from orders.tests.conftest import FakeClock

_orders = cast(sa.Table, Order.__table__)


class _RefusingOutbox(Outbox):
    """An outbox that cannot take one order's OrderCancelled (a bug, a constraint, a row it cannot encode)."""

    def __init__(self, refused: uuid.UUID) -> None:
        super().__init__(source="orders")
        self.refused = refused

    async def add(self, session: Any, stream: str, event: Any, **kwargs: Any) -> Any:
        if event.order_id == self.refused:
            raise RuntimeError("cannot write this event")
        return await super().add(session, stream, event, **kwargs)


async def _overdue_orders(db, clock: FakeClock, count: int) -> list[uuid.UUID]:
    ids = sorted(uuid.uuid4() for _ in range(count))
    async with db.transaction() as session:
        await session.execute(
            _orders.insert(),
            [
                dict(
                    id=order_id,
                    customer_id="alice",
                    status="awaiting_stock",
                    total_amount=450,
                    currency="EUR",
                    card_token="tok_visa",
                    step_deadline=clock.now,
                    created_at=clock.now,
                    updated_at=clock.now,
                )
                for order_id in ids
            ],
        )
    return ids


async def _statuses(db) -> dict[uuid.UUID, str]:
    return {row.id: row.status for row in await db.fetch_all(sa.select(_orders.c.id, _orders.c.status))}


async def test_an_order_that_cannot_be_cancelled_does_not_hold_back_the_other_overdue_orders(orders_db):
    clock = FakeClock()
    ids = await _overdue_orders(orders_db, clock, 5)
    poison = ids[0]  # the first in the sweeper's order: the others come after it
    sweeper = Sweeper(
        orders_db,
        Saga(step_timeout_seconds=30, clock=clock),
        _RefusingOutbox(poison),
        interval_seconds=0.05,
        key_ttl_seconds=86_400,
        batch_size=2,
    )
    await sweeper.sweep()
    statuses = await _statuses(orders_db)
    assert statuses.pop(poison) == "awaiting_stock"  # tried again on the next pass
    assert set(statuses.values()) == {"cancelled"}
    assert sweeper.last_error is None  # the sweeper works: one order does not make the instance unready


class _StuckDatabase:
    """A database whose reads never answer (a lock wait that never ends, a connection that hangs)."""

    def __init__(self, db) -> None:
        self.db = db

    async def fetch_all(self, statement: Any) -> Any:
        await asyncio.Event().wait()


async def test_a_sweeper_stuck_in_a_pass_fails_readiness(orders_db):
    sweeper = Sweeper(
        cast(Any, _StuckDatabase(orders_db)),
        Saga(step_timeout_seconds=30, clock=FakeClock()),
        Outbox(source="orders"),
        interval_seconds=0.01,
        key_ttl_seconds=86_400,
        stuck_after_seconds=0.05,
    )
    task = asyncio.create_task(sweeper.run())
    check = sweeper_check(sweeper, task)
    try:

        async def not_ready() -> bool:
            try:
                await check()
            except RuntimeError as exc:
                return "no sweep has completed" in str(exc)
            return False

        await eventually(not_ready, what="readiness failing")
    finally:
        sweeper.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_sweeper_that_completes_its_passes_is_ready(orders_db):
    sweeper = Sweeper(
        orders_db,
        Saga(step_timeout_seconds=30, clock=FakeClock()),
        Outbox(source="orders"),
        interval_seconds=0.01,
        key_ttl_seconds=86_400,
        stuck_after_seconds=5,
    )
    task = asyncio.create_task(sweeper.run())
    try:
        await eventually(lambda: _passes(sweeper, 3), what="three passes")
        await sweeper_check(sweeper, task)()
    finally:
        sweeper.stop()
        await task
    with pytest.raises(RuntimeError, match="ended"):
        await sweeper_check(sweeper, task)()


async def _passes(sweeper: Sweeper, count: int) -> bool:
    return sweeper.passes >= count
