"""A consumer group's upkeep counted in Redis, where any process (``streams-admin``) can read it.

Prometheus counters live in one process and start again at zero with it; these say what happened
to the group whoever did it: recreations after ``NOGROUP`` (and the last one's time), entries
reclaimed from dead consumers, idle consumers removed. One small hash per stream and group. A Redis
that lost its data (the usual cause of a recreation) lost this hash too: the counts then start
again with the recreation that healed the group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as redis

KEY_PREFIX = "flotilla:streams:group:"


@dataclass(frozen=True)
class GroupCounters:
    recreated: int = 0
    last_recreated_ms: int = 0  # Unix time in milliseconds; 0: never recreated
    reclaimed: int = 0
    consumers_removed: int = 0


def counters_key(stream: str, group: str) -> str:
    return f"{KEY_PREFIX}{stream}:{group}"


async def record_recreated(client: redis.Redis, stream: str, group: str) -> None:
    """Count one recreation of ``group`` on ``stream``, now. Raises RedisError."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hincrby(counters_key(stream, group), "recreated", 1)
        pipe.hset(counters_key(stream, group), "last_recreated_ms", int(time.time() * 1000))
        await pipe.execute()


async def record_reclaimed(client: redis.Redis, stream: str, group: str, entries: int) -> None:
    """Count ``entries`` reclaimed from dead consumers. Raises RedisError."""
    await client.hincrby(counters_key(stream, group), "reclaimed", entries)


async def record_consumers_removed(client: redis.Redis, stream: str, group: str, consumers: int) -> None:
    """Count ``consumers`` removed from the group for being idle. Raises RedisError."""
    await client.hincrby(counters_key(stream, group), "consumers_removed", consumers)


async def read_counters(client: redis.Redis, stream: str, group: str) -> GroupCounters:
    """The counters of ``group`` on ``stream`` (zeros when nothing was counted). Raises RedisError."""
    fields = await client.hgetall(counters_key(stream, group))

    def number(name: bytes) -> int:
        try:
            return int(fields.get(name, 0))
        except ValueError:  # written by hand or by something else: unreadable is "not counted"
            return 0

    return GroupCounters(
        recreated=number(b"recreated"),
        last_recreated_ms=number(b"last_recreated_ms"),
        reclaimed=number(b"reclaimed"),
        consumers_removed=number(b"consumers_removed"),
    )
