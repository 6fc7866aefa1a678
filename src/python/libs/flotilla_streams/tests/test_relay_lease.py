"""The relay lease: one relay pass at a time per SQLite file, taken over once a holder's expires."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from flotilla_kit.testing.waiting import eventually
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from flotilla_streams.outbox import Outbox, OutboxRelay
from flotilla_streams.relay_lease import RelayLease
from flotilla_streams.tests.conftest import make_database
from flotilla_streams.tests.events import STREAM, order


class WallClock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.seconds)


async def _take(db, lease: RelayLease) -> bool:
    async with db.transaction() as session:
        return await lease.take(session)


async def _give_back(db, lease: RelayLease) -> None:
    async with db.transaction() as session:
        await lease.give_back(session)


async def test_two_relays_on_one_file_take_turns(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    first_db, second_db = await make_database(url), await make_database(url)
    clock = WallClock()
    first, second = RelayLease(seconds=10, now=clock), RelayLease(seconds=10, now=clock)
    try:
        assert await _take(first_db, first)
        assert not await _take(second_db, second)
        assert await _take(first_db, first)  # its own lease: renewed
        await _give_back(second_db, second)  # not its lease: changes nothing
        assert not await _take(second_db, second)
        await _give_back(first_db, first)
        assert await _take(second_db, second)
        assert not await _take(first_db, first)
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_a_holder_that_crashed_mid_pass_is_replaced_when_its_lease_expires(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    first_db, second_db = await make_database(url), await make_database(url)
    clock = WallClock()
    first, second = RelayLease(seconds=10, now=clock), RelayLease(seconds=10, now=clock)
    try:
        assert await _take(first_db, first)
        clock.seconds = 9.9
        assert not await _take(second_db, second)
        clock.seconds = 10.1  # the holder never gave it back
        assert await _take(second_db, second)
        assert not await _take(first_db, first)
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_replicas_sharing_a_sqlite_file_send_every_event_once_and_promptly(client, tmp_path):
    """Two processes' relays on one file (two engines here), each waking only on its own commits:
    every event reaches the stream exactly once, in each producer's order, without waiting for a poll."""
    url = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    dbs = [await make_database(url), await make_database(url)]
    outboxes = [Outbox(source=f"replica-{i}") for i in range(2)]
    relays = [OutboxRelay(db, client, box, poll_interval=3600) for db, box in zip(dbs, outboxes, strict=True)]
    tasks = [asyncio.create_task(relay.run()) for relay in relays]
    written: list[list[str]] = [[], []]

    async def produce(i: int) -> None:
        for n in range(60):
            async with dbs[i].transaction() as session:
                written[i].append((await outboxes[i].add(session, STREAM, order(n))).id)

    try:
        await asyncio.gather(produce(0), produce(1))
        await eventually(lambda: _stream_holds(client, 120), timeout=20, what="all 120 events relayed")
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.gather(*tasks)
        for db in dbs:
            await db.dispose()
    sent = [decode(fields[ENVELOPE_FIELD]) for _, fields in await client.xrange(STREAM)]
    assert len(sent) == 120 and len({e.id for e in sent}) == 120
    for i in range(2):
        assert [e.id for e in sent if e.source == f"replica-{i}"] == written[i]


async def _stream_holds(client, n: int) -> bool:
    return await client.xlen(STREAM) >= n
