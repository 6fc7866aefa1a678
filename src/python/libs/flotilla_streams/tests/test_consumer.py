"""Consumer groups against a real Redis server and real databases."""

import asyncio
import dataclasses
import logging

import pytest
import sqlalchemy as sa
from redis.exceptions import ConnectionError as RedisConnectionError

from flotilla_contracts.events import OrderPlaced
from flotilla_kit.testing.waiting import eventually
from flotilla_streams.consumer import ConsumerOptions, Handlers, StreamConsumer
from flotilla_streams.dlq import list_entries, replay
from flotilla_streams.envelope import ENVELOPE_FIELD, encode, wrap
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


async def effect_counts(db) -> tuple[int, int]:
    async with db.reader() as session:
        row = (await session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(effects.c.event_id))))).one()
    return row[0], row[1]


async def pending_count(client, group: str) -> int:
    return int((await client.xpending(STREAM, group))["pending"])


class Running:
    """A consumer running as a task, stopped and awaited at the end."""

    def __init__(self, consumer: StreamConsumer) -> None:
        self.consumer = consumer
        self.task = asyncio.create_task(consumer.run())

    async def stop(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 10)


def consumer(client, db=None, handlers=None, *, name="c1", group="g", metrics=None, options=FAST) -> StreamConsumer:
    return StreamConsumer(
        client,
        group=group,
        consumer=name,
        streams=[STREAM],
        handlers=handlers or recording_handlers(),
        db=db,
        options=options,
        metrics=metrics,
    )


async def test_every_published_event_is_handled_once_and_acked(client, db):
    publisher = Publisher(client, source="orders")
    await publisher.publish_many(STREAM, [order(i) for i in range(300)])
    running = Running(consumer(client, db))
    await eventually(lambda: _equals(effect_counts(db), (300, 300)), what="300 effects")
    await running.stop()
    assert await pending_count(client, "g") == 0


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected


async def test_an_ack_lost_after_the_commit_does_not_repeat_the_effect(client, db, monkeypatch):
    """The handler commits, the ack never reaches Redis; redelivery finds the inbox entry."""
    registry = CollectorRegistry()
    metrics = ConsumerMetrics(registry)
    subject = consumer(client, db, metrics=metrics)
    real_xack = client.xack
    failures = {"left": 1}

    async def xack_failing_once(*args):
        if failures["left"]:
            failures["left"] -= 1
            raise RedisConnectionError("connection lost before the ack")
        return await real_xack(*args)

    monkeypatch.setattr(client, "xack", xack_failing_once)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(20)])
    running = Running(subject)
    await eventually(lambda: _pending_is(client, "g", 0), what="everything acked")
    await running.stop()
    assert await effect_counts(db) == (20, 20)
    assert registry.get_sample_value("flotilla_stream_duplicates_total", {"stream": STREAM, "group": "g"}) == 20


async def _pending_is(client, group, expected) -> bool:
    try:
        return await pending_count(client, group) == expected
    except Exception:
        return False


async def test_a_failing_handler_is_retried_until_it_succeeds(client, sqlite_db):
    attempts: list[int] = []
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def flaky(event, ctx):
        attempts.append(ctx.deliveries)
        if len(attempts) < 3:
            raise RuntimeError("downstream busy")
        await ctx.session.execute(effects.insert().values(event_id=ctx.envelope.id, order_id="x"))

    await Publisher(client, source="orders").publish(STREAM, order(1))
    running = Running(consumer(client, sqlite_db, handlers))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (1, 1)), what="handled after retries")
    await running.stop()
    assert attempts == [1, 2, 3]
    assert await list_entries(client, STREAM) == []


async def test_poison_and_failing_entries_go_to_the_dlq_and_the_stream_keeps_flowing(client, sqlite_db):
    broken = {"on": True}
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def handle(event, ctx):
        if event.customer_id == "c-2" and broken["on"]:
            raise ValueError("customer c-2 is blocked")
        await ctx.session.execute(effects.insert().values(event_id=ctx.envelope.id, order_id=str(event.order_id)))

    publisher = Publisher(client, source="orders")
    await publisher.publish(STREAM, order(1))
    await client.xadd(STREAM, {b"junk": b"no envelope here"})
    await client.xadd(STREAM, {ENVELOPE_FIELD: b'{"id": "half an envelope"'})
    await publisher.publish(STREAM, order(2))  # always fails
    await publisher.publish(STREAM, order(3))
    options = ConsumerOptions(
        batch_size=10,
        block_ms=50,
        retry_backoff_ms=10,
        max_retry_backoff_ms=20,
        max_deliveries=3,
        maintenance_interval_ms=10,
    )
    running = Running(consumer(client, sqlite_db, handlers, options=options))
    await eventually(lambda: _dlq_size(client, 3), what="three dead letters")
    await eventually(lambda: _equals(effect_counts(sqlite_db), (2, 2)), what="good events handled")

    dead = await list_entries(client, STREAM)
    reasons = [d.reason for d in dead]
    assert "undecodable" in reasons[0] and "has no 'envelope' field" in reasons[0]
    assert "undecodable: not a valid envelope" in reasons[1]
    assert reasons[2] == "gave up after 3 deliveries: ValueError: customer c-2 is blocked"
    assert dead[2].group == "g" and dead[2].deliveries == 3
    assert await pending_count(client, "g") == 0

    # Fixed: replaying the failed one handles it; the stream still flows.
    broken["on"] = False
    assert await replay(client, STREAM, [dead[2].id]) == [dead[2].id]
    await publisher.publish(STREAM, order(4))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (4, 4)), what="replayed and new events handled")
    await running.stop()
    assert [d.id for d in await list_entries(client, STREAM)] == [dead[0].id, dead[1].id]


async def _dlq_size(client, size) -> bool:
    return len(await list_entries(client, STREAM)) == size


async def test_a_deleted_group_is_recreated_and_consumption_goes_on(client, sqlite_db):
    registry = CollectorRegistry()
    running = Running(consumer(client, sqlite_db, metrics=ConsumerMetrics(registry)))
    publisher = Publisher(client, source="orders")
    await publisher.publish(STREAM, order(1))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (1, 1)), what="first event")
    await client.xgroup_destroy(STREAM, "g")
    await publisher.publish(STREAM, order(2))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (2, 2)), what="event after the group was lost")
    await running.stop()
    assert registry.get_sample_value("flotilla_stream_group_recreated_total", {"stream": STREAM, "group": "g"}) >= 1


async def test_entries_of_a_dead_consumer_are_reclaimed_by_another(client, sqlite_db):
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(10)])
    # A consumer that read the entries and died before handling them.
    await client.xreadgroup("g", "dead-one", {STREAM: ">"}, count=10)
    assert await pending_count(client, "g") == 10
    running = Running(consumer(client, sqlite_db, name="survivor"))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (10, 10)), what="reclaimed and handled")
    await eventually(lambda: _pending_is(client, "g", 0), what="all acked")
    await running.stop()


async def test_reclaimed_entries_delivered_too_often_all_go_to_the_dlq_even_a_dozen_of_one_millisecond(
    client, sqlite_db
):
    """Ids of one millisecond order by sequence number (1-9 before 1-10), not as bytes (b"1-10" < b"1-9")."""
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    async with client.pipeline(transaction=False) as pipe:
        for sequence in range(12):
            pipe.xadd(STREAM, {ENVELOPE_FIELD: encode(wrap(order(sequence), source="orders"))}, id=f"1-{sequence}")
        ids = await pipe.execute()
    # A consumer that kept failing on them (5 deliveries already) and then died.
    await client.xreadgroup("g", "dead-one", {STREAM: ">"}, count=12)
    await client.xclaim(STREAM, "g", "dead-one", min_idle_time=0, message_ids=ids, idle=60_000, retrycount=5)
    options = dataclasses.replace(FAST, max_deliveries=3)
    running = Running(consumer(client, sqlite_db, name="survivor", options=options))
    await eventually(lambda: _pending_is(client, "g", 0), what="every reclaimed entry dead-lettered or handled")
    await running.stop()
    assert sorted(entry.original_id for entry in await list_entries(client, STREAM)) == sorted(
        entry_id.decode() for entry_id in ids
    )
    assert await effect_counts(sqlite_db) == (0, 0)


async def test_entries_trimmed_away_while_pending_at_a_dead_consumer_are_dropped_and_not_counted(client, sqlite_db):
    """Redis 6.2 claims such an entry as a nil entry without its id, and keeps it pending."""
    await client.xgroup_create(STREAM, "g", id="0", mkstream=True)
    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(3)])
    read = await client.xreadgroup("g", "dead-one", {STREAM: ">"}, count=3)
    await client.xdel(STREAM, read[0][1][1][0])  # trimmed by retention while still pending
    registry = CollectorRegistry()
    running = Running(consumer(client, sqlite_db, name="survivor", metrics=ConsumerMetrics(registry)))
    await eventually(lambda: _pending_is(client, "g", 0), what="nothing left pending")
    await running.stop()
    assert await effect_counts(sqlite_db) == (2, 2)
    assert registry.get_sample_value("flotilla_stream_reclaimed_total", {"stream": STREAM, "group": "g"}) == 2
    assert registry.get_sample_value("flotilla_stream_consumer_restarts_total", {"group": "g"}) in (None, 0)


async def test_an_outage_while_recreating_a_lost_group_is_ridden_out_not_counted_as_a_crash(
    client, sqlite_db, monkeypatch, caplog
):
    registry = CollectorRegistry()
    running = Running(consumer(client, sqlite_db, metrics=ConsumerMetrics(registry)))
    publisher = Publisher(client, source="orders")
    await publisher.publish(STREAM, order(1))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (1, 1)), what="first event")
    real_create = client.xgroup_create
    outage = {"left": 1}

    async def create_during_an_outage(*args, **kwargs):
        # Redis goes away between answering NOGROUP and the group's recreation.
        if outage["left"]:
            outage["left"] -= 1
            raise RedisConnectionError("connection refused")
        return await real_create(*args, **kwargs)

    monkeypatch.setattr(client, "xgroup_create", create_during_an_outage)
    await client.xgroup_destroy(STREAM, "g")
    await publisher.publish(STREAM, order(2))
    await eventually(lambda: _equals(effect_counts(sqlite_db), (2, 2)), what="event after the group was lost")
    await running.stop()
    assert outage["left"] == 0
    assert registry.get_sample_value("flotilla_stream_consumer_restarts_total", {"group": "g"}) in (None, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_stopping_finishes_the_batch_at_hand(client, sqlite_db):
    started, release = asyncio.Event(), asyncio.Event()
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def slow(event, ctx):
        started.set()
        await release.wait()
        await ctx.session.execute(effects.insert().values(event_id=ctx.envelope.id, order_id="x"))

    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(5)])
    running = Running(consumer(client, sqlite_db, handlers))
    await asyncio.wait_for(started.wait(), 10)
    running.consumer.stop()
    release.set()
    await asyncio.wait_for(running.task, 10)
    assert await effect_counts(sqlite_db) == (5, 5)
    assert await pending_count(client, "g") == 0


async def test_without_a_database_handlers_run_bare_and_entries_are_acked(client):
    seen: list[str] = []
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def remember(event, ctx):
        seen.append(event.customer_id)

    await Publisher(client, source="orders").publish_many(STREAM, [order(i) for i in range(3)])
    running = Running(consumer(client, None, handlers))
    await eventually(lambda: _true(len(seen) == 3), what="three handled")
    await eventually(lambda: _pending_is(client, "g", 0), what="acked")
    await running.stop()
    assert seen == ["c-0", "c-1", "c-2"]


async def _true(value: bool) -> bool:
    return value


def test_a_second_handler_for_one_type_is_refused():
    handlers: Handlers[OrderPlaced] = Handlers()
    handlers.on(OrderPlaced)(lambda e, c: None)
    with pytest.raises(ValueError, match="already registered"):
        handlers.on(OrderPlaced)(lambda e, c: None)
