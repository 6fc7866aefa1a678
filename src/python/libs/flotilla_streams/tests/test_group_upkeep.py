"""Consumer groups look after themselves: idle consumers leave, reclaims and recreations are counted."""

import asyncio
import dataclasses

import sqlalchemy as sa

from flotilla_kit.testing.waiting import eventually
from flotilla_streams.consumer import ConsumerOptions, StreamConsumer
from flotilla_streams.group_counters import read_counters
from flotilla_streams.idle_consumers import remove_idle_consumers
from flotilla_streams.metrics import ConsumerMetrics
from flotilla_streams.publisher import Publisher
from flotilla_streams.tests.conftest import effects
from flotilla_streams.tests.events import STREAM, order, recording_handlers
from prometheus_client import CollectorRegistry

FAST = ConsumerOptions(
    batch_size=50,
    block_ms=50,
    retry_backoff_ms=20,
    max_retry_backoff_ms=100,
    claim_idle_ms=300,
    maintenance_interval_ms=20,
)


class Running:
    """A consumer running as a task, stopped and awaited at the end."""

    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.task = asyncio.create_task(consumer.run())

    async def stop(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 10)


def consumer(client, db, *, name="c1", metrics=None, options=FAST) -> StreamConsumer:
    return StreamConsumer(
        client,
        group="g",
        consumer=name,
        streams=[STREAM],
        handlers=recording_handlers(),
        db=db,
        options=options,
        metrics=metrics,
    )


async def _effects_are(db, expected: tuple[int, int]) -> bool:
    async with db.reader() as session:
        row = (await session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(effects.c.event_id))))).one()
    return (row[0], row[1]) == expected


async def _nothing_pending(client) -> bool:
    return int((await client.xpending(STREAM, "g"))["pending"]) == 0


async def _consumers(client, group="g") -> dict[str, int]:
    """Consumer name -> its pending count."""
    return {info["name"].decode(): int(info["pending"]) for info in await client.xinfo_consumers(STREAM, group)}


async def _read_and_leave(client, name: str, count: int, *, ack: bool) -> None:
    """A consumer that read ``count`` entries and then went away, acking them first or not."""
    read = await client.xreadgroup("g", name, {STREAM: ">"}, count=count)
    if ack:
        await client.xack(STREAM, "g", *[entry_id for entry_id, _ in read[0][1]])


async def test_only_consumers_idle_past_the_threshold_with_nothing_pending_are_removed(client):
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(6)])
    await _read_and_leave(client, "gone-clean", 2, ack=True)
    await _read_and_leave(client, "gone-busy", 2, ack=False)
    await _read_and_leave(client, "me", 2, ack=True)

    # Nobody has been idle for an hour: nothing goes.
    assert await remove_idle_consumers(client, STREAM, "g", idle_ms=3_600_000, keep="me") == []
    # Past the threshold, only the one with nothing pending goes; the caller itself never does.
    assert await remove_idle_consumers(client, STREAM, "g", idle_ms=0, keep="me") == ["gone-clean"]
    assert await _consumers(client) == {"gone-busy": 2, "me": 0}
    # A group or stream that is not there is nothing to clean.
    assert await remove_idle_consumers(client, STREAM, "no-such-group", idle_ms=0, keep="me") == []
    assert await remove_idle_consumers(client, "no.such.stream", "g", idle_ms=0, keep="me") == []


async def test_a_running_consumer_removes_idle_consumers_but_never_one_with_pending_entries(client, sqlite_db):
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(4)])
    await _read_and_leave(client, "gone-clean", 2, ack=True)
    await _read_and_leave(client, "gone-busy", 2, ack=False)
    registry = CollectorRegistry()
    options = dataclasses.replace(FAST, claim_idle_ms=3_600_000, idle_consumer_ms=50, idle_consumer_check_ms=20)
    running = Running(consumer(client, sqlite_db, name="survivor", metrics=ConsumerMetrics(registry), options=options))
    await eventually(lambda: _lacks(client, "gone-clean"), what="the idle consumer removed")
    # The pass that removed it looked at every consumer at once: the busy one was seen and kept.
    assert (await _consumers(client))["gone-busy"] == 2
    await running.stop()
    assert registry.get_sample_value("flotilla_stream_consumers_removed_total", {"stream": STREAM, "group": "g"}) == 1
    assert (await read_counters(client, STREAM, "g")).consumers_removed == 1


async def _lacks(client, name) -> bool:
    return name not in await _consumers(client)


async def test_entries_reclaimed_from_a_dead_consumer_are_counted_per_group(client, sqlite_db):
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(10)])
    await _read_and_leave(client, "dead-one", 10, ack=False)
    registry = CollectorRegistry()
    running = Running(consumer(client, sqlite_db, name="survivor", metrics=ConsumerMetrics(registry)))
    await eventually(lambda: _effects_are(sqlite_db, (10, 10)), what="reclaimed and handled")
    await eventually(lambda: _nothing_pending(client), what="all acked")
    await running.stop()
    assert registry.get_sample_value("flotilla_stream_reclaimed_total", {"stream": STREAM, "group": "g"}) == 10
    assert (await read_counters(client, STREAM, "g")).reclaimed == 10


async def test_a_recreated_group_is_counted_once_in_redis_where_other_processes_read_it(client, sqlite_db):
    registry = CollectorRegistry()
    running = Running(consumer(client, sqlite_db, metrics=ConsumerMetrics(registry)))
    publisher = Publisher(client, source="orders")
    await publisher.publish(STREAM, order(1))
    await eventually(lambda: _effects_are(sqlite_db, (1, 1)), what="first event")
    assert (await read_counters(client, STREAM, "g")).recreated == 0  # creating it at start is no recreation
    await client.xgroup_destroy(STREAM, "g")
    await publisher.publish(STREAM, order(2))
    await eventually(lambda: _effects_are(sqlite_db, (2, 2)), what="event after the group was lost")
    await running.stop()
    counters = await read_counters(client, STREAM, "g")
    assert counters.recreated == 1 and counters.last_recreated_ms > 0
    assert registry.get_sample_value("flotilla_stream_group_recreated_total", {"stream": STREAM, "group": "g"}) == 1


async def test_two_instances_meeting_one_lost_group_count_one_recreation(client, sqlite_db):
    running = [Running(consumer(client, sqlite_db, name=name)) for name in ("a", "b")]
    await asyncio.gather(*(asyncio.wait_for(r.consumer.ready.wait(), 10) for r in running))
    await client.xgroup_destroy(STREAM, "g")
    await Publisher(client, source="orders").publish(STREAM, order(1))
    await eventually(lambda: _effects_are(sqlite_db, (1, 1)), what="event after the group was lost")
    for r in running:
        await r.stop()
    assert (await read_counters(client, STREAM, "g")).recreated == 1
