"""Stream and consumer-group statistics: length, pending, oldest pending, lag, DLQ size, and the
group's upkeep (consumers, recreations, reclaims, consumers removed)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ResponseError

from flotilla_streams.dlq import dlq_stream
from flotilla_streams.group_counters import read_counters

# Redis 6.2 reports no lag; counting undelivered entries is capped so that stats stay cheap.
_LAG_COUNT_CAP = 10_000


@dataclass(frozen=True)
class GroupStats:
    stream: str
    group: str
    length: int
    pending: int
    oldest_pending_idle_ms: int
    lag: int
    dlq_length: int
    consumers: int = 0
    recreated: int = 0
    last_recreated_ms: int = 0  # Unix time in milliseconds; 0: never
    reclaimed: int = 0
    consumers_removed: int = 0


async def group_stats(client: redis.Redis, stream: str, group: str) -> GroupStats | None:
    """Stats of ``group`` on ``stream``; None when the stream or group does not exist."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:
        return None
    info = next((g for g in groups if _text(g["name"]) == group), None)
    if info is None:
        return None
    length = await client.xlen(stream)
    oldest_idle = 0
    if info["pending"]:
        oldest = await client.xpending_range(stream, group, min="-", max="+", count=1)
        oldest_idle = oldest[0]["time_since_delivered"] if oldest else 0
    lag = info.get("lag")
    if lag is None:  # Redis < 7, or a lag Redis cannot compute after deletions
        after = "(" + _text(info["last-delivered-id"])
        lag = len(await client.xrange(stream, min=after, max="+", count=_LAG_COUNT_CAP))
    counters = await read_counters(client, stream, group)
    return GroupStats(
        stream=stream,
        group=group,
        length=length,
        pending=int(info["pending"]),
        oldest_pending_idle_ms=int(oldest_idle),
        lag=int(lag),
        dlq_length=await client.xlen(dlq_stream(stream)),
        consumers=int(info["consumers"]),
        recreated=counters.recreated,
        last_recreated_ms=counters.last_recreated_ms,
        reclaimed=counters.reclaimed,
        consumers_removed=counters.consumers_removed,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
