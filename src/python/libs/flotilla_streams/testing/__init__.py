"""Helpers for testing services that consume and publish through flotilla_streams.

Kept out of the runtime modules (nothing here runs in production) but in the lib, so that each
service's tests drive their consumers the same way instead of copying these into every conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import redis.asyncio as redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.events import Event, event_type
from flotilla_kit.db import Database
from flotilla_kit.testing.waiting import eventually
from flotilla_streams.consumer import HandlerContext, Handlers
from flotilla_streams.envelope import ENVELOPE_FIELD, Envelope, PayloadDecoder, decode, encode, wrap
from flotilla_streams.outbox import Outbox
from flotilla_streams.schema import metadata as messaging_metadata
from flotilla_streams.stats import group_stats


async def publish(
    client: redis.Redis, stream: str, event: Event, *, source: str = "test", envelope: Envelope | None = None
) -> Envelope:
    """XADD ``event`` on ``stream`` as its producer's relay would; returns its envelope.

    Pass the ``envelope`` of an earlier call to deliver the same event again (same id): a redelivery.
    """
    envelope = envelope or wrap(event, source=source)
    await client.xadd(stream, {ENVELOPE_FIELD: encode(envelope)})
    return envelope


async def read_events(client: redis.Redis, stream: str, decoder: PayloadDecoder) -> list[Any]:
    """The events of ``stream``, in stream order, decoded (XRANGE: for tests, never a hot path)."""
    return [decoder.decode(decode(fields[ENVELOPE_FIELD])) for _, fields in await client.xrange(stream)]


async def group_done(client: redis.Redis, stream: str, group: str) -> bool:
    """Whether ``group`` has read every entry of ``stream`` and acked it (nothing lagging, nothing pending)."""
    stats = await group_stats(client, stream, group)
    return stats is not None and not stats.pending and not stats.lag


async def handle(
    handlers: Handlers[Any],
    event: Event,
    session: AsyncSession,
    *,
    stream: str,
    outbox: Outbox | None = None,
    deliveries: int = 1,
    source: str = "test",
) -> Envelope:
    """Run the handler of ``event`` in ``session`` as the consumer would, without Redis or the inbox.

    For tests that need two handlers in two open transactions at once (races between instances on
    one database). Returns the envelope the event was wrapped in.
    """
    envelope = wrap(event, source=source)
    _, handler = handlers.by_type[event_type(type(event))]
    await handler(event, HandlerContext(envelope, stream, deliveries, session, outbox))
    return envelope


@contextlib.asynccontextmanager
async def database_with(url: str, service_metadata: sa.MetaData) -> AsyncIterator[Database]:
    """A Database on ``url`` holding the service's tables and the messaging tables (no migrations:
    each service's own test proves its migrations match its models)."""
    db = Database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(service_metadata.create_all)
            await connection.run_sync(messaging_metadata.create_all)
        yield db
    finally:
        await db.dispose()


async def someone_waits_on_a_lock(db: Database) -> None:
    """Wait until some session of ``db`` waits on a row or key lock another transaction holds.

    PostgreSQL only: there it is the moment a race between two open transactions is on. SQLite
    takes its one write lock at BEGIN IMMEDIATE, so a second writer runs wholly after the first
    whenever it starts: there is nothing to wait for, and this returns at once.
    """
    if db.is_sqlite:
        return

    async def waiting() -> bool:
        query = sa.text(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
        )
        row = await db.fetch_one(query)
        return row is not None and row[0] > 0

    await eventually(waiting, what="a transaction waiting on another's lock")


def as_another_instance(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Start ``work`` in a task of its own context, as another instance of the service would run it.

    A plain task inherits the caller's context variables, among them the database layer's note
    that this task holds a transaction: work started from inside one would count as nested in it.
    """
    return asyncio.create_task(work, context=contextvars.Context())
