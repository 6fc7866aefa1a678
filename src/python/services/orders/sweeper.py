"""The sweeper: cancels orders whose saga step was not answered by its deadline.

It runs in every orders instance. That is safe with several, because each cancellation is the
saga's guarded transition (orders.saga): of two sweepers finding one overdue order, one cancels it
and the other finds it cancelled already. The deadlines are in the database, so a restarted
instance finds every overdue saga, whoever placed it. It also forgets Idempotency-Keys past their
lifetime.

Each order is cancelled in its own transaction: a batch in one transaction would hold the write
lock (SQLite) or the rows' locks (PostgreSQL, where consumers lock the same rows in another order:
deadlocks) for the whole batch, and one order that cannot be cancelled would roll back the others,
on every pass, for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from litestar import Litestar

from flotilla_kit.app import Component
from flotilla_kit.db import Database
from flotilla_kit.health import ReadinessCheck
from flotilla_streams.outbox import Outbox
from orders import domain
from orders.models import IdempotencyKey, Order
from orders.saga import Saga

log = logging.getLogger(__name__)

_orders = cast(sa.Table, Order.__table__)
_keys = cast(sa.Table, IdempotencyKey.__table__)
_PURGE_EVERY_SECONDS = 60.0
# A sweeper that has made no progress (no pass, no order) for this long is stuck: a statement waiting
# on a lock or a connection that hangs. Well above SQLite's busy timeout (5 s).
_STUCK_AFTER_SECONDS = 30.0


class Sweeper:
    def __init__(
        self,
        db: Database,
        saga: Saga,
        outbox: Outbox,
        *,
        interval_seconds: float,
        key_ttl_seconds: float,
        batch_size: int = 100,
        stuck_after_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.saga = saga
        self.outbox = outbox
        self.interval_seconds = interval_seconds
        self.key_ttl = timedelta(seconds=key_ttl_seconds)
        self.batch_size = batch_size
        self.stuck_after = stuck_after_seconds or max(_STUCK_AFTER_SECONDS, 10 * interval_seconds)
        self.last_error: str | None = None  # why the last pass failed; None once one succeeds
        self.passes = 0  # completed
        self.failed_cancellations = 0  # orders whose cancellation failed (each is tried again next pass)
        self._progress_at: float | None = None  # loop time of the last pass or order done
        self._stopping = asyncio.Event()
        self._next_purge = 0.0

    def stop(self) -> None:
        self._stopping.set()

    def stuck_for(self) -> float:
        """Seconds since the sweeper last made progress (0 before it runs)."""
        if self._progress_at is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._progress_at

    async def run(self) -> None:
        """Sweep every ``interval_seconds`` until stopped; a failed pass is logged, shown in readiness, and retried."""
        loop = asyncio.get_running_loop()
        self._progress_at = loop.time()
        while not self._stopping.is_set():
            try:
                await self.sweep()
                if loop.time() >= self._next_purge:
                    await self.purge_expired_keys()
                    self._next_purge = loop.time() + _PURGE_EVERY_SECONDS
                self.last_error = None
                self.passes += 1
                self._progress_at = loop.time()
            except Exception as exc:  # anything: a sweeper that stops sweeping must not stay silent
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("sweep failed, retrying in %.1fs", self.interval_seconds, exc_info=exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)

    async def sweep(self) -> int:
        """Cancel every order overdue now (each with OrderCancelled); returns how many were cancelled.

        An order whose cancellation fails is logged and counted, and tried again on the next pass;
        the others go on. Raises only when the overdue orders cannot be read.
        """
        now = self.saga.clock()
        cancelled = 0
        after: tuple[datetime, uuid.UUID] | None = None
        while not self._stopping.is_set():
            overdue = await self.db.fetch_all(self._overdue(now, after))
            for row in overdue:
                if await self._cancel(row.id, now):
                    cancelled += 1
            if len(overdue) < self.batch_size:
                break
            # Past the batch, not again from the start: an order that failed is not retried in this pass.
            after = (overdue[-1].step_deadline, overdue[-1].id)
        return cancelled

    def _overdue(self, now: datetime, after: tuple[datetime, uuid.UUID] | None) -> sa.Select[Any]:
        query = (
            sa.select(_orders.c.id, _orders.c.step_deadline)
            .where(_orders.c.step_deadline <= now, _orders.c.status.in_(domain.WAITING_STATUSES))
            .order_by(_orders.c.step_deadline, _orders.c.id)
            .limit(self.batch_size)
        )
        if after is not None:
            query = query.where(sa.tuple_(_orders.c.step_deadline, _orders.c.id) > sa.tuple_(*after))
        return query

    async def _cancel(self, order_id: uuid.UUID, now: datetime) -> bool:
        try:
            async with self.db.transaction() as session:
                publish = functools.partial(self.outbox.add, session)
                done = await self.saga.advance(
                    session, order_id, domain.SagaEvent.STEP_TIMED_OUT, publish=publish, overdue_at=now
                )
        except Exception as exc:  # this order only: the others must still be cancelled
            self.failed_cancellations += 1
            log.error("could not cancel an overdue order", extra={"order_id": str(order_id)}, exc_info=exc)
            return False
        finally:
            self._progress_at = asyncio.get_running_loop().time()
        if done:
            log.info("order cancelled: its step timed out", extra={"order_id": str(order_id)})
        return done

    async def purge_expired_keys(self) -> int:
        """Forget Idempotency-Keys older than their lifetime (a request with one is new again)."""
        cutoff = self.saga.clock() - self.key_ttl
        async with self.db.transaction() as session:
            result = await session.execute(_keys.delete().where(_keys.c.created_at <= cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def sweeper_component(saga: Saga, outbox: Outbox) -> Component:
    """Runs a Sweeper with the app; adds the readiness check ``sweeper``."""

    @contextlib.asynccontextmanager
    async def component(app: Litestar) -> AsyncIterator[None]:
        settings = app.state.settings
        sweeper = Sweeper(
            app.state.db,
            saga,
            outbox,
            interval_seconds=settings.sweep_interval_seconds,
            key_ttl_seconds=settings.idempotency_key_ttl_seconds,
        )
        task = asyncio.create_task(sweeper.run(), name="saga sweeper")
        app.state.sweeper = sweeper
        app.state.readiness_checks["sweeper"] = sweeper_check(sweeper, task)
        try:
            yield
        finally:
            sweeper.stop()
            await asyncio.gather(task, return_exceptions=True)

    return component


def sweeper_check(sweeper: Sweeper, task: asyncio.Task[None]) -> ReadinessCheck:
    """Not ready while the sweeper does not sweep: sagas whose answer was lost would stay open."""

    async def check() -> None:
        if task.done():  # ``run`` ends only when stopped, cancelled or killed by a bug
            raise RuntimeError("the sweeper task has ended")
        if sweeper.last_error:
            raise RuntimeError(f"the last sweep failed: {sweeper.last_error}")
        stuck = sweeper.stuck_for()
        if stuck > sweeper.stuck_after:
            raise RuntimeError(f"no sweep has completed for {stuck:.0f}s: the sweeper is stuck")

    return check
