"""Kill -9 a consumer process in the middle of a batch: another consumer finishes, nothing twice."""

import asyncio
import os
import signal
import subprocess
import sys

import sqlalchemy as sa

from flotilla_kit.testing.waiting import eventually
from flotilla_streams.consumer import ConsumerOptions, StreamConsumer
from flotilla_streams.publisher import Publisher
from flotilla_streams.tests.conftest import effects
from flotilla_streams.tests.events import STREAM, order, recording_handlers

EVENTS = 2000
STALLED_BATCH_START = 300  # the fourth batch of 100


async def _effects(db) -> tuple[int, int]:
    async with db.reader() as session:
        row = (await session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(effects.c.event_id))))).one()
    return row[0], row[1]


async def test_a_killed_consumers_entries_are_finished_by_another_exactly_once(client, redis_server, db):
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(EVENTS)])
    database_url = db.url.render_as_string(hide_password=False)
    process = subprocess.Popen(  # noqa: ASYNC101 - returns at once; the process runs beside the test
        [sys.executable, "-m", "flotilla_streams.tests.consumer_process", redis_server.url, database_url, "doomed"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    fourth_batch = (await client.xrange(STREAM, count=STALLED_BATCH_START + 1))[-1][0]
    try:
        # It stalls in its fourth batch (see consumer_process): three committed and acked, the
        # fourth read and pending at it, half handled. Killed only then, so the survivor must reclaim.
        await eventually(lambda: _at_least(db, STALLED_BATCH_START), timeout=60, what="the first consumer under way")
        await eventually(
            lambda: _pending_from(client, fourth_batch, 100), timeout=60, what="the fourth batch pending at it"
        )
    finally:
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 10)
    assert (await _effects(db))[0] == STALLED_BATCH_START

    survivor = StreamConsumer(
        client,
        group="g",
        consumer="survivor",
        streams=[STREAM],
        handlers=recording_handlers(),
        db=db,
        options=ConsumerOptions(batch_size=200, block_ms=50, claim_idle_ms=500, maintenance_interval_ms=50),
    )
    task = asyncio.create_task(survivor.run())
    await eventually(lambda: _done(db), timeout=60, what=f"all {EVENTS} handled")
    await eventually(lambda: _no_pending(client), timeout=30, what="nothing pending")
    survivor.stop()
    await asyncio.wait_for(task, 10)
    assert await _effects(db) == (EVENTS, EVENTS)


async def _at_least(db, n) -> bool:
    return (await _effects(db))[0] >= n


async def _pending_from(client, first_id: bytes, count: int) -> bool:
    summary = await client.xpending(STREAM, "g")
    return summary["pending"] == count and summary["min"] == first_id


async def _done(db) -> bool:
    return (await _effects(db))[0] >= EVENTS


async def _no_pending(client) -> bool:
    return (await client.xpending(STREAM, "g"))["pending"] == 0
