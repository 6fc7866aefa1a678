"""Retention trims streams by policy without touching what a group still needs."""

import time

from flotilla_streams.retention import RetentionPolicy, trim
from flotilla_streams.stats import group_stats
from flotilla_streams.tests.events import STREAM

EXACT = {"approximate": False}


async def _fill(client, n: int) -> list[bytes]:
    return [await client.xadd(STREAM, {b"n": str(i).encode()}) for i in range(n)]


async def test_length_policy_trims_the_oldest_entries_when_no_group_reads(client):
    await _fill(client, 100)
    assert await trim(client, STREAM, RetentionPolicy(max_length=30, **EXACT)) == 70
    assert await client.xlen(STREAM) == 30


async def test_trimming_stops_at_the_oldest_pending_entry(client):
    ids = await _fill(client, 100)
    await client.xgroup_create(STREAM, "g", id="0")
    await client.xreadgroup("g", "c", {STREAM: ">"}, count=50)
    await client.xack(STREAM, "g", *ids[:40])  # entries 40..49 are delivered, not acked
    await trim(client, STREAM, RetentionPolicy(max_length=10, **EXACT))
    remaining = [entry_id for entry_id, _ in await client.xrange(STREAM)]
    assert remaining == ids[40:]


async def test_trimming_stops_at_entries_not_yet_delivered(client):
    ids = await _fill(client, 100)
    await client.xgroup_create(STREAM, "g", id="0")
    read = await client.xreadgroup("g", "c", {STREAM: ">"}, count=20)
    await client.xack(STREAM, "g", *[entry_id for entry_id, _ in read[0][1]])
    await trim(client, STREAM, RetentionPolicy(max_length=5, **EXACT))
    assert [entry_id for entry_id, _ in await client.xrange(STREAM)] == ids[20:]


async def test_the_slowest_group_decides(client):
    ids = await _fill(client, 50)
    for group, read in (("fast", 50), ("slow", 10)):
        await client.xgroup_create(STREAM, group, id="0")
        entries = await client.xreadgroup(group, "c", {STREAM: ">"}, count=read)
        await client.xack(STREAM, group, *[entry_id for entry_id, _ in entries[0][1]])
    await trim(client, STREAM, RetentionPolicy(max_length=1, **EXACT))
    assert [entry_id for entry_id, _ in await client.xrange(STREAM)] == ids[10:]


async def test_age_policy_trims_entries_older_than_the_limit(client):
    old = int(time.time() * 1000) - 60_000
    for i in range(5):
        await client.xadd(STREAM, {b"n": b"old"}, id=f"{old}-{i}")
    await _fill(client, 3)
    assert await trim(client, STREAM, RetentionPolicy(max_age_ms=30_000, **EXACT)) == 5
    assert await client.xlen(STREAM) == 3


async def test_stats_report_length_pending_lag_and_dlq(client):
    ids = await _fill(client, 30)
    await client.xgroup_create(STREAM, "g", id="0")
    await client.xreadgroup("g", "c", {STREAM: ">"}, count=10)
    await client.xack(STREAM, "g", *ids[:4])
    await client.xadd(STREAM + ".dlq", {b"x": b"y"})
    stats = await group_stats(client, STREAM, "g")
    assert stats is not None
    assert (stats.length, stats.pending, stats.lag, stats.dlq_length) == (30, 6, 20, 1)
    assert stats.oldest_pending_idle_ms >= 0
    assert await group_stats(client, STREAM, "nope") is None
    assert await group_stats(client, "no.such.stream", "g") is None
