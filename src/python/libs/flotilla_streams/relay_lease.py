"""One outbox relay pass at a time per SQLite database, by a lease row that expires.

Replicas of a service on one host may share a SQLite file. Two relays reading the unsent rows at
once would both send them: every event twice (harmless to inboxes, but twice the work) and out of
order. So a SQLite relay pass takes the lease in the transaction that reads the rows, and gives it
back in the one that marks them sent: passes of different processes take turns, and whichever
process committed an event relays it at once. A holder that crashed mid-pass loses the lease
when it expires (``seconds``), and another relay sends what it had read. The lease rides on
transactions a pass opens anyway: it costs no extra round trip.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_streams.schema import relay_lease


class RelayLease:
    def __init__(
        self,
        *,
        seconds: float = 10.0,
        name: str = "outbox",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.seconds = seconds
        self.name = name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._now = now

    async def take(self, session: AsyncSession) -> bool:
        """Take the lease in ``session``'s write transaction; False while another relay holds it."""
        now = self._now()
        expires = now + timedelta(seconds=self.seconds)
        statement = (
            sqlite_insert(relay_lease)
            .values(name=self.name, owner=self.owner, expires_at=expires)
            .on_conflict_do_update(
                index_elements=[relay_lease.c.name],
                set_={"owner": self.owner, "expires_at": expires},
                where=(relay_lease.c.owner == self.owner) | (relay_lease.c.expires_at < now),
            )
        )
        result = await session.execute(statement)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def give_back(self, session: AsyncSession) -> None:
        """Give the lease back in ``session``'s transaction (a no-op when another relay holds it)."""
        await session.execute(
            relay_lease.delete().where(relay_lease.c.name == self.name, relay_lease.c.owner == self.owner)
        )
