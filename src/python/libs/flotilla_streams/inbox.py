"""Inbox: the ids of events a consumer group has handled, written with the handler's changes.

Claiming an event id and applying the handler's writes commit together, so a redelivered event
finds its id taken and is skipped: delivery is at least once, the effect exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_streams.schema import inbox


async def claim_many(session: AsyncSession, group: str, event_ids: list[str]) -> set[str]:
    """Record many ids in one statement; returns those that were new (needs SQLite >= 3.35)."""
    if not event_ids:
        return set()
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    now = datetime.now(UTC)
    statement = (
        insert(inbox)
        .values([{"consumer_group": group, "event_id": event_id, "handled_at": now} for event_id in event_ids])
        .on_conflict_do_nothing(index_elements=["consumer_group", "event_id"])
        .returning(inbox.c.event_id)
    )
    return set((await session.scalars(statement)).all())


async def purge(session: AsyncSession, older_than: timedelta) -> int:
    """Forget ids handled before ``older_than`` ago: longer than any redelivery can take."""
    cutoff = datetime.now(UTC) - older_than
    result = await session.execute(sa.delete(inbox).where(inbox.c.handled_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
