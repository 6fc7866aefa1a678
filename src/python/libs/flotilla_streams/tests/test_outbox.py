"""The transactional outbox and its relay, through a Redis outage."""

import asyncio

import pytest
import sqlalchemy as sa

from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.factory import create_redis
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from flotilla_streams.outbox import Outbox, OutboxRelay
from flotilla_streams.schema import outbox as outbox_table
from flotilla_streams.tests.conftest import make_database
from flotilla_streams.tests.events import STREAM, order


async def _stream_envelopes(client):
    return [decode(fields[ENVELOPE_FIELD]) for _, fields in await client.xrange(STREAM)]


async def test_an_event_exists_only_if_its_transaction_commits(client, db):
    outbox = Outbox(source="orders")
    relay = OutboxRelay(db, client, outbox, poll_interval=0.05)
    task = asyncio.create_task(relay.run())
    async with db.transaction() as session:
        kept = await outbox.add(session, STREAM, order(1))
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await outbox.add(session, STREAM, order(2))
            raise RuntimeError("the state change failed")
    await eventually(lambda: _length_is(client, 1), what="the committed event relayed")
    relay.stop()
    await asyncio.wait_for(task, 10)
    assert [e.id for e in await _stream_envelopes(client)] == [kept.id]
    async with db.reader() as session:
        assert (await session.execute(sa.select(outbox_table.c.sent_at))).scalar_one() is not None


async def _true(value: bool) -> bool:
    return value


async def _length_is(client, n) -> bool:
    return await client.xlen(STREAM) == n


async def test_the_relay_wakes_on_commit_without_waiting_for_its_poll(client, sqlite_db):
    outbox = Outbox(source="orders")
    relay = OutboxRelay(sqlite_db, client, outbox, poll_interval=3600)  # only a wake-up can send
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(relay.idle.wait(), 10)  # its first pass is over: the event must wake it
    async with sqlite_db.transaction() as session:
        await outbox.add(session, STREAM, order(1))
    await eventually(lambda: _length_is(client, 1), timeout=10, what="relayed on commit")
    relay.stop()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_events_written_while_redis_is_down_all_arrive_in_order_per_producer(backend, request, tmp_path):
    redis_server = start_redis(persistent=True)
    client = create_redis(redis_server.url)
    producers = []
    for name in ("orders", "payments"):
        if backend == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path}/{name}.db"
        else:
            url = request.getfixturevalue("postgres").create_database(f"{name}_{tmp_path.name}".lower()[:60])
        db = await make_database(url)
        outbox = Outbox(source=name)
        relay = OutboxRelay(db, client, outbox, poll_interval=0.05, max_backoff=0.2)
        producers.append((name, db, outbox, relay, asyncio.create_task(relay.run())))
    try:
        redis_server.stop()
        written: dict[str, list[str]] = {name: [] for name, *_ in producers}
        for i in range(60):
            name, db, outbox, *_ = producers[i % 2]
            async with db.transaction() as session:
                written[name].append((await outbox.add(session, STREAM, order(i))).id)
        await eventually(lambda: _true(not any(relay.healthy for *_, relay, _ in producers)), what="relays failing")
        redis_server.start()
        await eventually(lambda: _length_is(client, 60), timeout=30, what="all 60 events after Redis returned")
        arrived = await _stream_envelopes(client)
        for name in written:
            assert [e.id for e in arrived if e.source == name] == written[name]
    finally:
        for _, db, _, relay, task in producers:
            relay.stop()
            await asyncio.wait_for(task, 10)
            await db.dispose()
        await client.aclose()
        redis_server.close()


async def test_stopping_the_relay_flushes_committed_events(client, sqlite_db):
    outbox = Outbox(source="orders")
    relay = OutboxRelay(sqlite_db, client, outbox, poll_interval=3600, batch_size=7)
    async with sqlite_db.transaction() as session:
        for i in range(30):
            await outbox.add(session, STREAM, order(i))
    relay.stop()  # stopped before it ever ran: the final flush must still send everything
    await asyncio.wait_for(relay.run(), 10)
    assert await client.xlen(STREAM) == 30
