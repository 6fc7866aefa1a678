"""The sweeper: cancels orders whose saga step was not answered by its deadline.

It runs in every orders instance. That is safe with several, because each cancellation is the
saga's guarded transition (orders.saga): of two sweepers finding one overdue order, one cancels it
and the other finds it cancelled already. The deadlines are in the database, so a restarted
instance finds every overdue saga, whoever placed it. It also forgets Idempotency-Keys past their
lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast

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
    ) -> None:
        self.db = db
        self.saga = saga
        self.outbox = outbox
        self.interval_seconds = interval_seconds
        self.key_ttl = timedelta(seconds=key_ttl_seconds)
        self.batch_size = batch_size
        self.last_error: str | None = None  # why the last pass failed; None once one succeeds
        self._stopping = asyncio.Event()
        self._next_purge = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Sweep every ``interval_seconds`` until stopped; a failed pass is logged, shown in readiness, and retried."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                while await self.sweep_once() == self.batch_size:
                    pass  # more overdue orders than a batch: go on at once
                if loop.time() >= self._next_purge:
                    await self.purge_expired_keys()
                    self._next_purge = loop.time() + _PURGE_EVERY_SECONDS
                self.last_error = None
            except Exception as exc:  # anything: a sweeper that stops sweeping must not stay silent
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error("sweep failed, retrying in %.1fs", self.interval_seconds, exc_info=exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_seconds)

    async def sweep_once(self) -> int:
        """Cancel the overdue orders of one batch (each with OrderCancelled); returns how many were overdue."""
        now = self.saga.clock()
        overdue = await self.db.fetch_all(
            sa.select(_orders.c.id)
            .where(_orders.c.step_deadline <= now, _orders.c.status.in_(domain.WAITING_STATUSES))
            .order_by(_orders.c.step_deadline, _orders.c.id)  # one order of locking: no deadlock between sweepers
            .limit(self.batch_size)
        )
        if not overdue:
            return 0
        async with self.db.transaction() as session:
            publish = functools.partial(self.outbox.add, session)
            for row in overdue:
                if await self.saga.advance(
                    session, row.id, domain.SagaEvent.STEP_TIMED_OUT, publish=publish, overdue_at=now
                ):
                    log.info("order cancelled: its step timed out", extra={"order_id": str(row.id)})
        return len(overdue)

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
        app.state.readiness_checks["sweeper"] = _sweeper_check(sweeper, task)
        try:
            yield
        finally:
            sweeper.stop()
            await asyncio.gather(task, return_exceptions=True)

    return component


def _sweeper_check(sweeper: Sweeper, task: asyncio.Task[None]) -> ReadinessCheck:
    async def check() -> None:
        # Not sweeping means sagas whose answer was lost stay open: not ready.
        if task.done():  # ``run`` ends only when stopped, cancelled or killed by a bug
            raise RuntimeError("the sweeper task has ended")
        if sweeper.last_error:
            raise RuntimeError(f"the last sweep failed: {sweeper.last_error}")

    return check
