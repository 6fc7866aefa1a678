"""Transactional outbox: events are written with the state change, then relayed to Redis.

``Outbox.add`` writes the event row in the caller's transaction, so the event exists exactly when
the change does. ``OutboxRelay`` forwards unsent rows in id order with pipelined XADD and marks them
sent in the same database transaction; it wakes when a transaction that added events commits, and
polls too (for rows added by other processes). Replicas sharing a database relay one pass at a
time (a PostgreSQL advisory lock; on SQLite a lease row, flotilla_streams.relay_lease). When Redis
is down it backs off and catches up later: an event is delayed, never lost. A crash between XADD and the commit re-sends a batch;
consumers' inboxes make that harmless. Any other error (a bug, a row it cannot send) stops the
relay's loop only: it is logged with its traceback, counted, and the loop restarts after a backoff;
``last_error`` says why the relay is not relaying meanwhile (the service's readiness check).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as redis
import sqlalchemy as sa
from redis.exceptions import RedisError
from sqlalchemy import event as sa_event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.events import Event
from flotilla_kit.db import Database
from flotilla_kit.tracing import producing, relaying
from flotilla_streams.envelope import Envelope, decode, encode, wrap
from flotilla_streams.metrics import OutboxMetrics
from flotilla_streams.publisher import publish_encoded
from flotilla_streams.relay_lease import RelayLease
from flotilla_streams.schema import outbox

__all__ = ["Outbox", "OutboxMetrics", "OutboxRelay"]  # OutboxMetrics lives in metrics, imported here too

log = logging.getLogger(__name__)

_WAKE_HOOKED = "flotilla_outbox_wake_hooked"
_RELAY_LOCK = 0x0F1077B0  # pg advisory lock key of the relay
_BUSY_RETRY_SECONDS = 0.005


class Outbox:
    """Adds events to the outbox table inside the caller's transaction."""

    def __init__(self, *, source: str) -> None:
        self.source = source
        self._wake = asyncio.Event()

    async def add(
        self, session: AsyncSession, stream: str, event: Event, *, causation: Envelope | None = None
    ) -> Envelope:
        """Write ``event`` for ``stream`` in ``session``'s transaction; it is relayed after commit."""
        return (await self.add_many(session, stream, [event], causation=causation))[0]

    async def add_many(
        self, session: AsyncSession, stream: str, events: Sequence[Event], *, causation: Envelope | None = None
    ) -> list[Envelope]:
        """Write several events in one statement, in order, in ``session``'s transaction.

        Traced (flotilla_kit.tracing): a PRODUCER span of type "create", whose context the envelopes
        carry; the relay's span links to it.
        """
        span = producing(stream, operation="create", operation_type="create")
        traceparent = span.traceparent if span else None
        envelopes = [wrap(event, source=self.source, causation=causation, traceparent=traceparent) for event in events]
        now = datetime.now(UTC)
        rows = [{"stream": stream, "event_id": e.id, "envelope": encode(e), "created_at": now} for e in envelopes]
        if span is None:
            await session.execute(outbox.insert(), rows)
        else:
            with span:
                span.messages([e.id for e in envelopes])
                await session.execute(outbox.insert(), rows)
        if not session.info.get(_WAKE_HOOKED):
            # Wake the relay when this transaction commits, not before: it would find nothing.
            sa_event.listen(session.sync_session, "after_commit", lambda _s: self._wake.set())
            session.info[_WAKE_HOOKED] = True
        return envelopes


class OutboxRelay:
    """Forwards outbox rows to Redis; run one per process (``run`` until ``stop``)."""

    def __init__(
        self,
        db: Database,
        client: redis.Redis,
        outbox_: Outbox,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
        restart_backoff: float = 0.1,  # after an unexpected error; doubles per failed restart
        max_restart_backoff: float = 30.0,
        keep_sent_for: timedelta = timedelta(hours=1),
        metrics: OutboxMetrics | None = None,
    ) -> None:
        self.db = db
        self.client = client
        self.outbox = outbox_
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.restart_backoff = restart_backoff
        self.max_restart_backoff = max_restart_backoff
        self.keep_sent_for = keep_sent_for
        self.metrics = metrics
        self._lease = RelayLease() if db.is_sqlite else None
        self._another_relay_busy = False  # the last pass found another relay at work
        self._stopping = asyncio.Event()
        self._restarts = 0  # since the loop last relayed successfully
        # Why the relay is not relaying right now (Redis or the database failing, or a restart after
        # an unexpected error); None while it relays.
        self.last_error: str | None = None
        # Set while the relay has sent everything it found and waits for a commit or its poll.
        self.idle = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """False from a failed pass until one succeeds again; ``last_error`` says why."""
        return self.last_error is None

    def stop(self) -> None:
        self._stopping.set()
        self.outbox._wake.set()

    async def run(self) -> None:
        """Relay until stopped; never ends on an error. On stop, a last pass flushes what is committed.

        An unexpected error ends the loop at hand only: it is logged and counted, and the loop starts
        again after a backoff; ``last_error`` holds it until the restarted loop has relayed a pass.
        """
        while not self._stopping.is_set():
            try:
                await self._relay_until_stopped()
            except Exception as exc:  # anything: a relay that stops relaying must not stay silent
                self._restarts += 1
                self.last_error = f"stopped by {type(exc).__name__}: {exc}; restarting"
                base = self.restart_backoff * 2 ** (self._restarts - 1)
                delay = min(base, self.max_restart_backoff) * random.uniform(0.5, 1.0)
                log.error("outbox relay stopped by an unexpected error, restarting in %.2fs", delay, exc_info=exc)
                if self.metrics:
                    self.metrics.restarts.inc()
                await self._sleep(delay)
        await self._flush()

    async def _relay_until_stopped(self) -> None:
        failures = 0
        last_purge = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            # Cleared before the pass: a commit during the pass sets it again and is not missed.
            self.outbox._wake.clear()
            self.idle.clear()
            try:
                sent = await self.relay_once()
                failures = 0
                self._restarts = 0
                self.last_error = None
                if loop.time() - last_purge > 60:
                    await self.purge_sent()
                    last_purge = loop.time()
            except (RedisError, SQLAlchemyError, OSError) as exc:
                failures += 1
                self.last_error = f"cannot relay: {type(exc).__name__}: {exc}"
                if self.metrics:
                    self.metrics.failures.inc()
                delay = min(self.max_backoff, 0.1 * 2**failures) * random.uniform(0.5, 1.0)
                log.warning("outbox relay failed, retrying in %.2fs: %s: %s", delay, type(exc).__name__, exc)
                await self._sleep(delay)
                continue
            if self._another_relay_busy:
                # A replica's relay is mid-pass: what this process committed may be newer than what
                # that pass read, so try again as soon as it is likely done, not at the next poll.
                await self._sleep(_BUSY_RETRY_SECONDS)
            elif sent < self.batch_size:
                await self._wait_for_work()

    async def _flush(self) -> None:
        try:
            while await self.relay_once() == self.batch_size:
                pass
        except (RedisError, SQLAlchemyError, OSError) as exc:
            log.warning("outbox not flushed on stop (events stay queued for the next start): %s", exc)
        except Exception as exc:  # stopping anyway: say why, once, and let the shutdown go on
            log.error("outbox not flushed on stop (events stay queued for the next start)", exc_info=exc)

    async def relay_once(self) -> int:
        """Forward one batch; returns how many events were sent."""
        self._another_relay_busy = False
        if self.db.is_sqlite:
            return await self._relay_sqlite()
        return await self._relay_postgres()

    async def _relay_postgres(self) -> int:
        async with self.db.transaction() as session:
            # One relay at a time per database keeps order per producer; others skip the pass.
            if not await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_RELAY_LOCK))):
                self._another_relay_busy = True
                return 0
            rows = await self._unsent(session)
            if rows:
                await self._send(rows)
                await self._mark_sent(session, rows)
        return len(rows)

    async def _relay_sqlite(self) -> int:
        # Read under the lease, send, then mark in a short write transaction: holding SQLite's
        # single write lock across the Redis round trip would stall every writer of the service.
        # The lease keeps the passes of replicas sharing the file apart (flotilla_streams.relay_lease).
        assert self._lease is not None
        async with self.db.transaction() as session:
            if not await self._lease.take(session):
                self._another_relay_busy = True
                return 0
            rows = await self._unsent(session)
            if not rows:
                await self._lease.give_back(session)
                return 0
        try:
            await self._send(rows)
        except BaseException:
            with contextlib.suppress(Exception):  # else it expires, and another relay takes over then
                async with self.db.transaction() as session:
                    await self._lease.give_back(session)
            raise
        async with self.db.transaction() as session:
            await self._mark_sent(session, rows)
            await self._lease.give_back(session)
        return len(rows)

    async def _unsent(self, session: AsyncSession) -> Sequence[Any]:
        rows = (
            await session.execute(
                sa.select(outbox.c.id, outbox.c.stream, outbox.c.envelope)
                .where(outbox.c.sent_at.is_(None))
                .order_by(outbox.c.id)
                .limit(self.batch_size)
            )
        ).all()
        if self.metrics:
            self.metrics.backlog.set(len(rows))
        return rows

    async def _send(self, rows: Sequence[Any]) -> None:
        entries = [(row.stream, row.envelope) for row in rows]
        # A PRODUCER span for the batch, linked to where each event was created, when tracing.
        span = relaying(_traced_messages(rows))
        # MULTI: consumers blocked on the stream wake once for the whole batch, not per entry.
        if span is None:
            await publish_encoded(self.client, entries, atomic=True)
        else:
            with span:
                await publish_encoded(self.client, entries, atomic=True)
        if self.metrics:
            self.metrics.relayed.inc(len(rows))

    async def _mark_sent(self, session: AsyncSession, rows: Sequence[Any]) -> None:
        await session.execute(
            outbox.update().where(outbox.c.id.in_([row.id for row in rows])).values(sent_at=datetime.now(UTC))
        )

    async def purge_sent(self) -> int:
        """Delete rows sent longer ago than ``keep_sent_for`` (kept a while for inspection)."""
        cutoff = datetime.now(UTC) - self.keep_sent_for
        async with self.db.transaction() as session:
            result = await session.execute(outbox.delete().where(outbox.c.sent_at < cutoff))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _wait_for_work(self) -> None:
        wake = self.outbox._wake
        self.idle.set()
        try:
            await asyncio.wait_for(wake.wait(), self.poll_interval)
        except TimeoutError:
            pass

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass


def _traced_messages(rows: Sequence[Any]) -> Iterator[tuple[str, str | None, str]]:
    # Lazily: only a relay span that is made reads the envelopes (decoding each costs a little).
    for row in rows:
        try:
            envelope = decode(row.envelope)
        except ValueError:
            continue  # sent as it is; its consumer dead-letters it
        yield row.stream, envelope.traceparent, envelope.id
