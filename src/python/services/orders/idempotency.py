"""Idempotency-Key storage: claim a key for a request, store its answer, replay it, or release it.

The rules (what a request with a key does) are in orders.domain; this module keeps the records.
A key is claimed in its own short transaction before the work starts, so that a concurrent request
with the same key sees it in flight (409) instead of doing the work twice. The claim carries a
token: only the request holding it stores its answer, in the same transaction as the work, so a
request whose stale claim was taken over cannot create a second order.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_kit.db import Database
from flotilla_kit.pagination import as_utc
from orders import domain
from orders.models import IdempotencyKey
from orders.saga import Clock

log = logging.getLogger(__name__)

_keys = cast(sa.Table, IdempotencyKey.__table__)
_headers_decoder = msgspec.json.Decoder(dict[str, str])
# A claim that finds the key answered or taken over between its read and its write looks again.
_CLAIM_ROUNDS = 3


@dataclass(frozen=True)
class StoredAnswer:
    """An answer as it was sent the first time: status, headers (content-type included) and body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    caller_id: str
    key: str
    token: str


class KeyInFlight(Exception):
    """A request with this key is still running (answered 409)."""


class KeyReused(Exception):
    """The key was used for another request body (answered 422)."""


class IdempotencyKeys:
    def __init__(self, db: Database, *, lock_timeout_seconds: float, ttl_seconds: float, clock: Clock) -> None:
        self.db = db
        self.lock_timeout = timedelta(seconds=lock_timeout_seconds)
        self.ttl = timedelta(seconds=ttl_seconds)
        self.clock = clock
        dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
        # A new key is the common case: claimed in one statement. A key that exists (or that another
        # transaction is inserting: PostgreSQL waits for it) inserts nothing, and is read.
        self._insert_new = dialect_insert(_keys).on_conflict_do_nothing(index_elements=["caller_id", "key"])

    async def claim(self, caller_id: str, key: str, fingerprint: str) -> Claim | StoredAnswer:
        """Claim ``key`` for this request, or return the first request's answer to replay.

        Raises KeyReused for another body under the key, KeyInFlight while the first request runs.
        """
        for _ in range(_CLAIM_ROUNDS):
            async with self.db.transaction() as session:
                outcome = await self._claim(session, caller_id, key, fingerprint)
            if outcome is not None:
                return outcome
        raise KeyInFlight(key)  # taken over by others each time we looked: someone holds it

    async def _claim(
        self, session: AsyncSession, caller_id: str, key: str, fingerprint: str
    ) -> Claim | StoredAnswer | None:
        now = self.clock()
        token = str(uuid.uuid4())
        claimed = dict(
            fingerprint=fingerprint,
            state="in_flight",
            claim_token=token,
            locked_at=now,
            created_at=now,
            response_status=None,
            response_headers=None,
            response_body=None,
        )
        inserted = await session.execute(self._insert_new.values(caller_id=caller_id, key=key, **claimed))
        if inserted.rowcount == 1:  # type: ignore[attr-defined]
            return Claim(caller_id, key, token)
        where = (_keys.c.caller_id == caller_id, _keys.c.key == key)
        row = (await session.execute(sa.select(_keys).where(*where))).first()
        if row is None:
            return None  # purged since the insert looked: look again
        record = domain.KeyRecord(
            fingerprint=row.fingerprint,
            state=row.state,
            claim_token=row.claim_token,
            locked_at=as_utc(row.locked_at),
            created_at=as_utc(row.created_at),
        )
        decision = domain.decide(record, fingerprint, now, lock_timeout=self.lock_timeout, ttl=self.ttl)
        if decision is domain.KeyDecision.MISMATCH:
            raise KeyReused(key)
        if decision is domain.KeyDecision.IN_FLIGHT:
            raise KeyInFlight(key)
        if decision is domain.KeyDecision.REPLAY:
            assert row.response_status is not None
            return StoredAnswer(row.response_status, row.response_body, _headers_decoder.decode(row.response_headers))
        # RECLAIM, only of the record as read: on PostgreSQL (read committed) the request that held
        # the claim may store its answer between our read and this write, keeping its token; the
        # state in the guard keeps us from erasing that answer (and placing a second order).
        taken = await session.execute(
            _keys.update()
            .where(*where, _keys.c.claim_token == record.claim_token, _keys.c.state == record.state)
            .values(**claimed)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None  # answered or taken over meanwhile: look again
        log.warning("took over an Idempotency-Key left in flight or expired", extra={"caller_id": caller_id})
        return Claim(caller_id, key, token)

    async def store(self, session: AsyncSession, claim: Claim, answer: StoredAnswer) -> bool:
        """Keep ``answer`` for replays, in the caller's transaction; False if the claim was taken over."""
        stored = await session.execute(
            _keys.update()
            .where(
                _keys.c.caller_id == claim.caller_id,
                _keys.c.key == claim.key,
                _keys.c.claim_token == claim.token,
                _keys.c.state == "in_flight",
            )
            .values(
                state="done",
                response_status=answer.status,
                response_headers=msgspec.json.encode(answer.headers).decode(),
                response_body=answer.body,
            )
        )
        return stored.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, claim: Claim) -> None:
        """Give the key back (the request failed on the server's side): a retry runs anew.

        Never raises: a key that cannot be released now is taken over after the lock timeout.
        """
        try:
            async with self.db.transaction() as session:
                await session.execute(
                    _keys.delete().where(
                        _keys.c.caller_id == claim.caller_id,
                        _keys.c.key == claim.key,
                        _keys.c.claim_token == claim.token,
                        _keys.c.state == "in_flight",
                    )
                )
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not release an Idempotency-Key (free again after the lock timeout): %s", exc)
