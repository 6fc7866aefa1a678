"""The saga's transitions on the database: each one writes the new state, a history step and the
next event in the caller's transaction, guarded by the status it expects.

The guard (``UPDATE orders ... WHERE id = :id AND status = :expected``) is what makes handlers and
sweepers safe to run anywhere and any number of times: of two writers racing on one order (a
payment answer and the sweeper, or two sweepers of two instances), one changes it and the other
finds the status moved, decides again on the new status, and usually does nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import ORDERS_EVENTS, Event, OrderCancelled, OrderConfirmed, PaymentRequested
from flotilla_kit.pagination import as_utc
from orders import domain
from orders.models import Order, OrderStep

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Publishes a follow-up event in the transaction at hand (a handler's ctx.publish, or the outbox).
Publish = Callable[[str, Event], Awaitable[Any]]

_orders = cast(sa.Table, Order.__table__)
_steps = cast(sa.Table, OrderStep.__table__)
# A transition that lost a race decides again on the new status; the statuses only move forward, so
# a few rounds always settle it.
_MAX_ROUNDS = 4


def utc_now() -> datetime:
    return datetime.now(UTC)


def in_utc(clock: Clock) -> Clock:
    """``clock``, its times converted to UTC: SQLite stores a time without its offset, so every time
    written must be UTC (deadlines compared in SQL and in Python, cursors); a naive time is refused."""

    def now() -> datetime:
        moment = clock()
        if moment.tzinfo is None:
            raise ValueError("the orders clock must return aware datetimes")
        return moment.astimezone(UTC)

    return now


async def add_step(session: AsyncSession, order_id: uuid.UUID, step: str, detail: str, at: datetime) -> None:
    await session.execute(_steps.insert().values(order_id=order_id, step=step, detail=detail, at=at))


class Saga:
    """Moves orders through their saga; ``clock`` is injectable so that deadline logic can be tested."""

    def __init__(self, *, step_timeout_seconds: float, clock: Clock = utc_now) -> None:
        self.step_timeout_seconds = step_timeout_seconds
        self.clock = clock

    async def advance(
        self,
        session: AsyncSession,
        order_id: uuid.UUID,
        event: domain.SagaEvent,
        *,
        publish: Publish,
        detail: str = "",
        reason: str = "",
        overdue_at: datetime | None = None,
    ) -> bool:
        """Apply ``event`` to the order in ``session``'s transaction; True when it changed or recorded anything.

        ``detail`` (what the event said) goes into the history step after the transition's note;
        ``reason`` is a cancellation's reason (unless the transition has its own). ``overdue_at``
        (the sweeper's) guards a timeout: the order is cancelled only if its deadline is still at or
        before that time.
        """
        now = self.clock()
        for _ in range(_MAX_ROUNDS):
            # The usual case first, in one statement: the order is where the event moves it from.
            for status, transition in domain.moves_of(event):
                if await self._move(session, order_id, status, transition, now, detail, reason, overdue_at, publish):
                    return True
            # It was not: decide on what it is now (a late answer to note, a duplicate, an unknown order).
            row = (
                await session.execute(
                    sa.select(_orders.c.status, _orders.c.step_deadline).where(_orders.c.id == order_id)
                )
            ).first()
            if row is None:
                log.warning("%s for an unknown order, ignored", event.value, extra={"order_id": str(order_id)})
                return False
            found = domain.transition_for(event, row.status)
            if found is None:
                log.info(
                    "%s changes nothing for an order %s", event.value, row.status, extra={"order_id": str(order_id)}
                )
                return False
            if found.to is None:
                return await self._note(session, order_id, found, found.detail(detail), now)
            if overdue_at is not None and not domain.is_overdue(row.status, _aware(row.step_deadline), overdue_at):
                return False  # answered in time after all: its deadline moved on
            # Another writer moved the order into a status this event moves from, after our update
            # looked: go again.
        raise RuntimeError(f"order {order_id} kept changing while {event.value} was applied")

    async def _move(
        self,
        session: AsyncSession,
        order_id: uuid.UUID,
        status: str,
        transition: domain.Transition,
        now: datetime,
        detail: str,
        reason: str,
        overdue_at: datetime | None,
        publish: Publish,
    ) -> bool:
        """The transition from ``status``, if the order is in it (the guard); with its step and follow-up."""
        assert transition.to is not None
        cancel_reason = transition.reason or reason
        guard = [_orders.c.id == order_id, _orders.c.status == status]
        if overdue_at is not None:
            guard.append(_orders.c.step_deadline <= overdue_at)
        row = (
            await session.execute(
                _orders.update()
                .where(*guard)
                .values(
                    status=transition.to,
                    step_deadline=domain.step_deadline(now, self.step_timeout_seconds, transition.to),
                    cancel_reason=cancel_reason if transition.to == "cancelled" else None,
                    updated_at=now,
                )
                .returning(_orders.c.customer_id, _orders.c.total_amount, _orders.c.currency, _orders.c.card_token)
            )
        ).first()
        if row is None:
            return False
        await add_step(session, order_id, transition.step, transition.detail(detail), now)
        if transition.follow_up is not None:
            await publish(ORDERS_EVENTS, _follow_up(transition.follow_up, order_id, row, cancel_reason))
        return True

    async def _note(
        self, session: AsyncSession, order_id: uuid.UUID, transition: domain.Transition, detail: str, now: datetime
    ) -> bool:
        if transition.once:
            seen = await session.scalar(
                sa.select(sa.func.count())
                .select_from(_steps)
                .where(_steps.c.order_id == order_id, _steps.c.step == transition.step)
            )
            if seen:
                return False
        await add_step(session, order_id, transition.step, detail, now)
        return True


def _aware(moment: datetime | None) -> datetime | None:
    return as_utc(moment) if moment is not None else None


def _follow_up(kind: domain.FollowUp, order_id: uuid.UUID, order: Any, reason: str) -> Event:
    total = Money(order.total_amount, order.currency)
    if kind is domain.FollowUp.PAYMENT_REQUESTED:
        return PaymentRequested(
            order_id=order_id, customer_id=order.customer_id, amount=total, card_token=order.card_token
        )
    if kind is domain.FollowUp.ORDER_CONFIRMED:
        return OrderConfirmed(order_id=order_id, customer_id=order.customer_id, total=total)
    return OrderCancelled(order_id=order_id, customer_id=order.customer_id, reason=reason)
