"""Stream retention: trim by length or age, never past entries a consumer group still needs."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import ResponseError


@dataclass(frozen=True)
class RetentionPolicy:
    """Keep at most ``max_length`` entries and/or none older than ``max_age_ms``."""

    max_length: int | None = None
    max_age_ms: int | None = None
    approximate: bool = True  # trim whole radix-tree nodes (cheap); never more than asked


def _parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _format(entry_id: tuple[int, int]) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


async def oldest_needed_id(client: redis.Redis, stream: str) -> tuple[int, int] | None:
    """The smallest id some group still needs (pending, or not yet delivered); None: no group."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:
        return None
    needed: list[tuple[int, int]] = []
    for info in groups:
        last_ms, last_seq = _parse_id(info["last-delivered-id"])
        needed.append((last_ms, last_seq + 1))  # everything after the last delivered entry
        if info["pending"]:
            summary = await client.xpending(stream, info["name"])
            needed.append(_parse_id(summary["min"]))
    return min(needed) if needed else None


async def trim(client: redis.Redis, stream: str, policy: RetentionPolicy) -> int:
    """Apply ``policy`` to ``stream``; returns the number of entries removed."""
    cutoffs: list[tuple[int, int]] = []
    if policy.max_age_ms is not None:
        cutoffs.append((int(time.time() * 1000) - policy.max_age_ms, 0))
    if policy.max_length is not None:
        excess = await client.xlen(stream) - policy.max_length
        if excess > 0:
            # The first entry to keep: the one after the `excess` oldest.
            oldest = await client.xrange(stream, min="-", max="+", count=excess + 1)
            if len(oldest) > excess:
                cutoffs.append(_parse_id(oldest[excess][0]))
    if not cutoffs:
        return 0
    cutoff = max(cutoffs)  # an entry goes when either limit says so...
    needed = await oldest_needed_id(client, stream)
    if needed is not None:
        cutoff = min(cutoff, needed)  # ...unless a group still needs it
    return int(await client.xtrim(stream, minid=_format(cutoff), approximate=policy.approximate))
