"""One outbox relay at a time per SQLite database, by a lease row that expires.

Replicas of a service on one host may share a SQLite file. Two relays would each read the unsent
rows and send them: every event twice (harmless to inboxes, but twice the work) and out of order.
The relay holding the lease relays; the others wait and take over once it expires (a crashed
holder is replaced within ``seconds``). The holder renews at half-time, so holding costs one short
write transaction every ``seconds / 2``, not one per pass.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from flotilla_kit.db import Database
from flotilla_streams.schema import relay_lease


class RelayLease:
    def __init__(
        self,
        db: Database,
        *,
        seconds: float = 10.0,
        name: str = "outbox",
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.seconds = seconds
        self.name = name
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._now = now
        self._renew_at: float | None = None  # monotonic time to renew; None while not held

    @property
    def held(self) -> bool:
        return self._renew_at is not None

    async def acquire(self) -> bool:
        """Whether this relay holds the lease now (taking or renewing it when due)."""
        if self._renew_at is not None and self._clock() < self._renew_at:
            return True
        started = self._clock()
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
        async with self.db.transaction() as session:
            result = await session.execute(statement)
        taken = bool(result.rowcount)  # type: ignore[attr-defined]
        self._renew_at = started + self.seconds / 2 if taken else None
        return taken

    async def release(self) -> None:
        """Give the lease up (on stop), so another relay takes over at once."""
        if self._renew_at is None:
            return
        self._renew_at = None
        async with self.db.transaction() as session:
            await session.execute(
                relay_lease.delete().where(relay_lease.c.name == self.name, relay_lease.c.owner == self.owner)
            )
