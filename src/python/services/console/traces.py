"""The bounded trace store: spans in, traces found and read back, the oldest traces dropped past the bound."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import msgspec
import sqlalchemy as sa
from console.masking import MASK, mask
from console.models import Span, SpanValue, Trace
from console.otlp import STATUS_NAMES, SpanRecord, iter_attribute_values

from flotilla_kit.db import Database, insert_unless_conflicting

MAX_VALUE_CHARS = 200  # longer attribute values are not searchable (ids are far shorter)
_json = msgspec.json.Encoder()
# Declarative models' tables, as the Core statements below take them (mypy sees only a FromClause).
_spans = cast(sa.Table, Span.__table__)
_traces = cast(sa.Table, Trace.__table__)
_values = cast(sa.Table, SpanValue.__table__)


class TraceSummary(msgspec.Struct, kw_only=True):
    trace_id: str
    root_service: str
    root_name: str
    start_ns: int
    duration_ms: float
    span_count: int
    services: list[str]
    error: bool


class SpanView(msgspec.Struct, kw_only=True):
    span_id: str
    parent_span_id: str
    service: str
    instance: str
    name: str
    kind: str
    start_ns: int
    duration_ms: float
    offset_ms: float  # from the trace's start
    status: str
    status_message: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]


class TraceView(msgspec.Struct, kw_only=True):
    trace: TraceSummary
    spans: list[SpanView]  # by start time


class TraceQuery(msgspec.Struct, kw_only=True, frozen=True):
    """What to look for; every given criterion must hold (service, operation, status, duration on one span)."""

    service: str | None = None
    operation: str | None = None  # a part of the span name, any case
    status: str | None = None  # "error" or "ok" (no span in error)
    min_duration_ms: float | None = None
    value: str | None = None  # an attribute value of any span: an order id, a correlation id
    limit: int = 50


async def store_spans(
    db: Database, records: Sequence[SpanRecord], *, max_spans: int, masked: frozenset[str] = frozenset()
) -> int:
    """Store ``records`` (a span already stored is skipped: exporters retry) and keep the store at most
    ``max_spans`` spans by dropping whole traces, oldest first. Attributes named in ``masked`` are
    stored as MASK (and not searchable). Returns how many spans went in."""
    if not records:
        return 0
    if masked:
        records = [replace(r, attributes=mask(r.attributes, masked)) for r in records]
    async with db.transaction() as session:
        inserted = await session.execute(
            insert_unless_conflicting(session, _spans, on=["trace_id", "span_id"]).returning(
                _spans.c.trace_id, _spans.c.span_id
            ),
            [_span_row(record) for record in records],
        )
        new = {(row.trace_id, row.span_id) for row in inserted}
        fresh = [record for record in records if (record.trace_id, record.span_id) in new]
        if not fresh:
            return 0
        value_rows = [
            {"trace_id": r.trace_id, "span_id": r.span_id, "key": key[:200], "value": value}
            for r in fresh
            for key, value in iter_attribute_values(r)
            if len(value) <= MAX_VALUE_CHARS and value != MASK
        ]
        if value_rows:
            await session.execute(
                insert_unless_conflicting(session, _values, on=["trace_id", "span_id", "key"]), value_rows
            )
        await _update_summaries(session, fresh)
        await _drop_oldest(session, max_spans)
    return len(fresh)


def _span_row(record: SpanRecord) -> dict[str, Any]:
    return {
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "parent_span_id": record.parent_span_id,
        "service": record.service[:200],
        "instance": record.instance[:200],
        "name": record.name[:500],
        "kind": record.kind,
        "start_ns": record.start_ns,
        "end_ns": record.end_ns,
        "duration_ns": record.duration_ns,
        "status_code": record.status_code,
        "status_message": record.status_message,
        "attributes": _json.encode(record.attributes).decode(),
        "events": _json.encode(record.events).decode(),
        "links": _json.encode(record.links).decode(),
    }


async def _update_summaries(session: Any, records: Sequence[SpanRecord]) -> None:
    by_trace: dict[str, list[SpanRecord]] = defaultdict(list)
    for record in records:
        by_trace[record.trace_id].append(record)
    existing = {
        row.trace_id: row
        for row in await session.execute(sa.select(_traces).where(_traces.c.trace_id.in_(list(by_trace))))
    }
    for trace_id, spans in by_trace.items():
        root = next((span for span in spans if not span.parent_span_id), None)
        first = min(spans, key=lambda span: span.start_ns)
        old = existing.get(trace_id)
        services = {span.service for span in spans} | (set(old.services.split(",")) if old else set())
        values: dict[str, Any] = {
            "span_count": len(spans) + (old.span_count if old else 0),
            "start_ns": min([first.start_ns, *([old.start_ns] if old else [])]),
            "end_ns": max([*(span.end_ns for span in spans), *([old.end_ns] if old else [])]),
            "has_error": any(span.status_code == 2 for span in spans) or bool(old and old.has_error),
            "services": ",".join(sorted(services)),
        }
        # The root names the trace; until it arrives, the earliest span does.
        if root is not None and not (old and old.has_root):
            values.update(root_service=root.service, root_name=root.name, has_root=True)
        elif old is None or (not old.has_root and first.start_ns < old.start_ns):
            values.update(root_service=first.service, root_name=first.name, has_root=False)
        if old is None:
            await session.execute(sa.insert(_traces).values(trace_id=trace_id, **values))
        else:
            await session.execute(sa.update(_traces).where(_traces.c.trace_id == trace_id).values(**values))


async def _drop_oldest(session: Any, max_spans: int) -> None:
    total = (await session.execute(sa.select(sa.func.coalesce(sa.func.sum(_traces.c.span_count), 0)))).scalar_one()
    excess = total - max_spans
    if excess <= 0:
        return
    doomed: list[str] = []
    last_seq = 0
    while excess > 0:
        rows = (
            await session.execute(
                sa.select(_traces.c.seq, _traces.c.trace_id, _traces.c.span_count)
                .where(_traces.c.seq > last_seq)
                .order_by(_traces.c.seq)
                .limit(500)
            )
        ).all()
        if not rows:
            break
        for row in rows:
            if excess <= 0:
                break
            doomed.append(row.trace_id)
            excess -= row.span_count
            last_seq = row.seq
    for start in range(0, len(doomed), 500):  # bounded IN lists
        chunk = doomed[start : start + 500]
        for table in (_values, _spans, _traces):
            await session.execute(sa.delete(table).where(table.c.trace_id.in_(chunk)))


async def span_total(db: Database) -> int:
    """How many spans the store holds."""
    row = await db.fetch_one(sa.select(sa.func.count()).select_from(_spans))
    return int(row[0]) if row else 0


async def find_traces(db: Database, query: TraceQuery) -> list[TraceSummary]:
    """The newest traces (by start) that match ``query``."""
    statement = sa.select(_traces).order_by(_traces.c.start_ns.desc()).limit(query.limit)
    span_filters = []
    if query.service:
        span_filters.append(_spans.c.service == query.service)
    if query.operation:
        span_filters.append(sa.func.lower(_spans.c.name).contains(query.operation.lower(), autoescape=True))
    if query.min_duration_ms is not None:
        span_filters.append(_spans.c.duration_ns >= int(query.min_duration_ms * 1_000_000))
    if query.status == "error":
        span_filters.append(_spans.c.status_code == 2)
    if span_filters:
        statement = statement.where(_traces.c.trace_id.in_(sa.select(_spans.c.trace_id).where(*span_filters)))
    if query.status == "ok":
        statement = statement.where(_traces.c.has_error.is_(False))
    if query.value:
        statement = statement.where(
            _traces.c.trace_id.in_(sa.select(_values.c.trace_id).where(_values.c.value == query.value))
        )
    return [_summary(row) for row in await db.fetch_all(statement)]


async def read_trace(db: Database, trace_id: str) -> TraceView | None:
    """One trace with all its spans, by start time; None when the store does not hold it."""
    trace = await db.fetch_one(sa.select(_traces).where(_traces.c.trace_id == trace_id))
    if trace is None:
        return None
    rows = await db.fetch_all(sa.select(_spans).where(_spans.c.trace_id == trace_id).order_by(_spans.c.start_ns))
    start = trace.start_ns
    spans = [
        SpanView(
            span_id=row.span_id,
            parent_span_id=row.parent_span_id,
            service=row.service,
            instance=row.instance,
            name=row.name,
            kind=row.kind,
            start_ns=row.start_ns,
            duration_ms=row.duration_ns / 1e6,
            offset_ms=(row.start_ns - start) / 1e6,
            status=STATUS_NAMES.get(row.status_code, str(row.status_code)),
            status_message=row.status_message,
            attributes=msgspec.json.decode(row.attributes),
            events=msgspec.json.decode(row.events),
            links=msgspec.json.decode(row.links),
        )
        for row in rows
    ]
    return TraceView(trace=_summary(trace), spans=spans)


def _summary(row: Any) -> TraceSummary:
    return TraceSummary(
        trace_id=row.trace_id,
        root_service=row.root_service,
        root_name=row.root_name,
        start_ns=row.start_ns,
        duration_ms=max(0, row.end_ns - row.start_ns) / 1e6,
        span_count=row.span_count,
        services=[s for s in row.services.split(",") if s],
        error=bool(row.has_error),
    )
