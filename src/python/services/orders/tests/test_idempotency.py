"""Idempotency-Key records on a real database (SQLite and PostgreSQL): claims, take-overs and their races."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from flotilla_kit.db import Database
from orders.idempotency import Claim, IdempotencyKeys, KeyInFlight, StoredAnswer
from orders.tests.conftest import FakeClock

LOCK_TIMEOUT = 60


def _keys(db: Any, clock: FakeClock) -> IdempotencyKeys:
    return IdempotencyKeys(db, lock_timeout_seconds=LOCK_TIMEOUT, ttl_seconds=86_400, clock=clock)


async def _answer(db: Database, keys: IdempotencyKeys, claim: Claim, answer: StoredAnswer) -> bool:
    async with db.transaction() as session:
        return await keys.store(session, claim, answer)


class _AfterFirstRead:
    """A Database whose transactions run ``interloper`` once, right after their first SELECT: what
    another request may do between a claim's read of a key and its write on PostgreSQL."""

    def __init__(self, db: Database, interloper: Callable[[], Awaitable[None]]) -> None:
        self.db = db
        self.interloper: Callable[[], Awaitable[None]] | None = interloper
        self.is_sqlite = db.is_sqlite

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self.db.transaction() as session:
            yield _Session(session, self)


class _Session:
    def __init__(self, session: Any, owner: _AfterFirstRead) -> None:
        self._session, self._owner = session, owner

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        result = await self._session.execute(statement, *args, **kwargs)
        interloper, self._owner.interloper = self._owner.interloper, None
        if interloper is not None and isinstance(statement, sa.Select):
            result = result.all()  # read now: the interloper's commit comes after this read
            await interloper()
            return _Rows(result)
        self._owner.interloper = interloper
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None


async def test_a_claim_taken_over_after_the_lock_timeout_cannot_store_its_answer(orders_db):
    clock = FakeClock()
    keys = _keys(orders_db, clock)
    slow = await keys.claim("alice", "k1", "body")
    assert isinstance(slow, Claim)
    clock.advance(LOCK_TIMEOUT + 1)  # the first request looks crashed: a retry takes the key over
    retry = await keys.claim("alice", "k1", "body")
    assert isinstance(retry, Claim) and retry.token != slow.token
    assert not await _answer(orders_db, keys, slow, StoredAnswer(201, b"slow"))  # its work rolls back
    assert await _answer(orders_db, keys, retry, StoredAnswer(201, b"retry"))
    assert await keys.claim("alice", "k1", "body") == StoredAnswer(201, b"retry")


async def test_a_take_over_that_read_the_claim_just_before_it_was_answered_replays_the_answer(orders_db, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the claim's transaction holds the write lock: the answer cannot come in between")
    clock = FakeClock()
    keys = _keys(orders_db, clock)
    slow = await keys.claim("alice", "k1", "body")
    assert isinstance(slow, Claim)
    clock.advance(LOCK_TIMEOUT + 1)  # the catalog was slow: the first request runs past the lock timeout

    async def slow_request_answers() -> None:  # ... and commits its order between the retry's read and write
        assert await _answer(orders_db, keys, slow, StoredAnswer(201, b"the first order"))

    retry = await _keys(_AfterFirstRead(orders_db, slow_request_answers), clock).claim("alice", "k1", "body")
    # Not a claim: that would place a second order under the key.
    assert retry == StoredAnswer(201, b"the first order")


async def test_two_take_overs_of_one_stale_claim_give_it_to_one(orders_db, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the claim's transaction holds the write lock: no other claim comes in between")
    clock = FakeClock()
    keys = _keys(orders_db, clock)
    assert isinstance(await keys.claim("alice", "k1", "body"), Claim)
    clock.advance(LOCK_TIMEOUT + 1)
    taken: list[Any] = []

    async def another_retry_takes_it() -> None:
        taken.append(await keys.claim("alice", "k1", "body"))

    with pytest.raises(KeyInFlight):
        await _keys(_AfterFirstRead(orders_db, another_retry_takes_it), clock).claim("alice", "k1", "body")
    assert isinstance(taken[0], Claim)


async def test_a_key_left_in_flight_by_a_crash_is_free_for_another_body_after_the_lock_timeout(orders_db):
    clock = FakeClock()
    keys = _keys(orders_db, clock)
    assert isinstance(await keys.claim("alice", "k1", "first body"), Claim)
    clock.advance(LOCK_TIMEOUT + 1)
    # Nothing was done under the key (as after a 5xx, which releases it): any request may have it now.
    assert isinstance(await keys.claim("alice", "k1", "another body"), Claim)
