"""Dead-letter streams: ``<stream>.dlq`` keeps entries that could not be handled, with the reason.

A dead-letter entry is the original entry's fields plus ``dlq_*`` fields saying why, where from
and when. Moving an entry there and acking the original happen in one MULTI, so an entry is never
in both places nor in neither. Replay puts the original fields back on the original stream.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as redis

DLQ_SUFFIX = ".dlq"
_META_PREFIX = b"dlq_"


def dlq_stream(stream: str) -> str:
    return stream + DLQ_SUFFIX


@dataclass(frozen=True)
class DeadLetter:
    """An entry to dead-letter: where it is and why it failed."""

    entry_id: bytes
    fields: dict[bytes, bytes]
    reason: str
    deliveries: int


@dataclass(frozen=True)
class DlqEntry:
    """An entry as it sits in a dead-letter stream."""

    id: str
    stream: str
    original_id: str
    group: str
    consumer: str
    reason: str
    deliveries: int
    failed_at_ms: int
    fields: dict[bytes, bytes]  # the original entry's fields


async def dead_letter(
    client: redis.Redis, stream: str, group: str, consumer: str, letters: Sequence[DeadLetter]
) -> None:
    """Move ``letters`` from ``stream`` to its DLQ and ack them, atomically per call."""
    if not letters:
        return
    now_ms = str(int(time.time() * 1000)).encode()
    async with client.pipeline(transaction=True) as pipe:
        for letter in letters:
            meta = {
                b"dlq_reason": letter.reason.encode()[:4000],
                b"dlq_stream": stream.encode(),
                b"dlq_entry_id": letter.entry_id,
                b"dlq_group": group.encode(),
                b"dlq_consumer": consumer.encode(),
                b"dlq_deliveries": str(letter.deliveries).encode(),
                b"dlq_failed_at_ms": now_ms,
            }
            original = {k: v for k, v in letter.fields.items() if not k.startswith(_META_PREFIX)}
            pipe.xadd(dlq_stream(stream), {**original, **meta})
        pipe.xack(stream, group, *[letter.entry_id for letter in letters])
        await pipe.execute()


def _parse(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> DlqEntry:
    def text(name: bytes) -> str:
        return fields.get(name, b"").decode(errors="replace")

    return DlqEntry(
        id=entry_id.decode(),
        stream=text(b"dlq_stream") or stream.removesuffix(DLQ_SUFFIX),
        original_id=text(b"dlq_entry_id"),
        group=text(b"dlq_group"),
        consumer=text(b"dlq_consumer"),
        reason=text(b"dlq_reason"),
        deliveries=int(text(b"dlq_deliveries") or 0),
        failed_at_ms=int(text(b"dlq_failed_at_ms") or 0),
        fields={k: v for k, v in fields.items() if not k.startswith(_META_PREFIX)},
    )


async def list_entries(client: redis.Redis, stream: str, *, count: int = 100, start: str = "-") -> list[DlqEntry]:
    """The oldest ``count`` dead letters of ``stream`` from ``start`` (an entry id or ``-``)."""
    rows = await client.xrange(dlq_stream(stream), min=start, max="+", count=count)
    return [_parse(stream, entry_id, fields) for entry_id, fields in rows]


async def get_entry(client: redis.Redis, stream: str, dlq_id: str) -> DlqEntry | None:
    rows = await client.xrange(dlq_stream(stream), min=dlq_id, max=dlq_id, count=1)
    return _parse(stream, *rows[0]) if rows else None


async def replay(client: redis.Redis, stream: str, dlq_ids: Sequence[str]) -> list[str]:
    """Put dead letters back on ``stream`` (as new entries) and remove them from the DLQ.

    Returns the ids replayed; ids not in the DLQ are skipped. Consumers see the same event ids
    again, so handlers that already applied an event (via the inbox) skip it.
    """
    replayed: list[str] = []
    for dlq_id in dlq_ids:
        entry = await get_entry(client, stream, dlq_id)
        if entry is None:
            continue
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, entry.fields)
            pipe.xdel(dlq_stream(stream), dlq_id)
            await pipe.execute()
        replayed.append(dlq_id)
    return replayed
