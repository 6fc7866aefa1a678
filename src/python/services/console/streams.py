"""The streams view: every stream with consumer groups, each group's stats and consumers, and its dead letters."""

from __future__ import annotations

import base64
from typing import Any

import msgspec
import redis.asyncio as redis
from console.masking import mask
from redis.exceptions import ResponseError

from flotilla_streams.dlq import DLQ_SUFFIX, DlqEntry, get_entry, list_entries
from flotilla_streams.envelope import ENVELOPE_FIELD
from flotilla_streams.stats import group_stats

# At most this many streams are looked at; a platform has tens.
MAX_STREAMS = 1000


class ConsumerView(msgspec.Struct, kw_only=True):
    name: str
    pending: int
    idle_ms: int


class GroupView(msgspec.Struct, kw_only=True):
    group: str
    lag: int
    pending: int
    oldest_pending_idle_ms: int
    consumers: list[ConsumerView]
    recreated: int
    reclaimed: int


class StreamView(msgspec.Struct, kw_only=True):
    stream: str
    length: int
    dead_letters: int
    groups: list[GroupView]


class DeadLetterView(msgspec.Struct, kw_only=True):
    id: str
    stream: str
    original_id: str
    group: str
    consumer: str
    reason: str
    deliveries: int
    failed_at_ms: int
    event_type: str
    event_id: str
    correlation_id: str
    payload: Any  # the entry's envelope decoded from JSON when it is JSON, else its fields as text


async def stream_names(client: redis.Redis) -> list[str]:
    """Every stream but the dead-letter ones, sorted (SCAN: a console's page, not a hot path)."""
    names: set[str] = set()
    async for key in client.scan_iter(count=500, _type="STREAM"):
        name = key.decode() if isinstance(key, bytes) else key
        if not name.endswith(DLQ_SUFFIX):
            names.add(name)
        if len(names) >= MAX_STREAMS:
            break
    return sorted(names)


async def stream_view(client: redis.Redis, stream: str) -> StreamView:
    """A stream's length, its dead letters and each of its groups (stats and consumers)."""
    try:
        groups = await client.xinfo_groups(stream)
    except ResponseError:  # no such stream (any more)
        groups = []
    views = []
    for info in groups:
        group = _text(info["name"])
        stats = await group_stats(client, stream, group)
        if stats is None:  # deleted between the two reads
            continue
        consumers = await client.xinfo_consumers(stream, group)
        views.append(
            GroupView(
                group=group,
                lag=stats.lag,
                pending=stats.pending,
                oldest_pending_idle_ms=stats.oldest_pending_idle_ms,
                consumers=[
                    ConsumerView(name=_text(c["name"]), pending=int(c["pending"]), idle_ms=int(c["idle"]))
                    for c in consumers
                ],
                recreated=stats.recreated,
                reclaimed=stats.reclaimed,
            )
        )
    return StreamView(
        stream=stream,
        length=await client.xlen(stream),
        dead_letters=await client.xlen(stream + DLQ_SUFFIX),
        groups=sorted(views, key=lambda view: view.group),
    )


async def all_streams(client: redis.Redis) -> list[StreamView]:
    return [await stream_view(client, stream) for stream in await stream_names(client)]


async def dead_letters(
    client: redis.Redis, stream: str, *, count: int, after: str | None, masked: frozenset[str] = frozenset()
) -> list[DeadLetterView]:
    """The oldest ``count`` dead letters of ``stream``, after the entry id ``after`` when given; the
    payload fields named in ``masked`` hidden."""
    start = f"({after}" if after else "-"
    entries = await list_entries(client, stream, count=count, start=start)
    return [_dead_letter_view(entry, masked) for entry in entries]


async def dead_letter(
    client: redis.Redis, stream: str, dlq_id: str, *, masked: frozenset[str] = frozenset()
) -> DeadLetterView | None:
    entry = await get_entry(client, stream, dlq_id)
    return _dead_letter_view(entry, masked) if entry else None


def _dead_letter_view(entry: DlqEntry, masked: frozenset[str]) -> DeadLetterView:
    envelope = _decoded(entry.fields.get(ENVELOPE_FIELD))
    header = envelope if isinstance(envelope, dict) else {}
    return DeadLetterView(
        id=entry.id,
        stream=entry.stream,
        original_id=entry.original_id,
        group=entry.group,
        consumer=entry.consumer,
        reason=entry.reason,
        deliveries=entry.deliveries,
        failed_at_ms=entry.failed_at_ms,
        event_type=str(header.get("type", "")),
        event_id=str(header.get("id", "")),
        correlation_id=str(header.get("correlation_id", "")),
        payload=mask(
            envelope if envelope is not None else {_text(k): _as_text(v) for k, v in entry.fields.items()}, masked
        ),
    )


def _decoded(raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def _as_text(value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError:  # binary: shown, never interpreted
        return "base64:" + base64.b64encode(value).decode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
