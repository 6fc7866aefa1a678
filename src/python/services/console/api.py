"""The console's HTTP API: OTLP ingestion, the read APIs its pages poll, the gated actions, and the pages."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast

import msgspec
import redis.asyncio as redis
import sqlalchemy as sa
from console import otlp, streams, traces
from console.instances import InstanceProber, InstanceView
from console.masking import masked_names
from console.models import AuditEntry
from console.settings import ConsoleSettings
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from flotilla_kit.db import Database
from flotilla_kit.identity import ADMIN_ROLE, CALLER_ID_HEADER, caller_roles
from flotilla_kit.openapi import problem_responses
from flotilla_kit.problems import (
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from flotilla_streams import dlq

STATIC_DIRECTORY = Path(__file__).parent / "static"
_audit = cast(sa.Table, AuditEntry.__table__)


class ConsoleConfig(msgspec.Struct, kw_only=True):
    service: str
    version: str
    write: bool  # whether actions are allowed at all (CONSOLE_WRITE)


class Instances(msgspec.Struct):
    items: list[InstanceView]


class Streams(msgspec.Struct):
    items: list[streams.StreamView]


class DeadLetters(msgspec.Struct):
    items: list[streams.DeadLetterView]


class Traces(msgspec.Struct):
    items: list[traces.TraceSummary]


class ReplayRequest(msgspec.Struct, kw_only=True):
    # The dead letter's id, typed again: a replay is never one stray click or a replayed request body.
    confirm: str


class Replayed(msgspec.Struct, kw_only=True):
    stream: str
    replayed: str


class AuditView(msgspec.Struct, kw_only=True):
    at: datetime
    caller: str
    action: str
    target: str
    outcome: str


class Audit(msgspec.Struct):
    items: list[AuditView]


def _redis(state: State) -> redis.Redis:
    client: redis.Redis | None = state.redis
    if client is None:
        raise ServiceUnavailable("the console has no REDIS_URL: streams and services cannot be shown")
    return client


class IngestController(Controller):
    """OTLP/HTTP: ``POST /v1/traces``, as any OpenTelemetry exporter sends it."""

    path = "/v1"

    @post(
        "/traces",
        status_code=200,
        responses=problem_responses({400: "Not an OTLP trace export, or over a limit.", 415: "Not protobuf or JSON."}),
    )
    async def ingest(
        self, request: Request[Any, Any, Any], db: NamedDependency[Database], settings: NamedDependency[ConsoleSettings]
    ) -> Response[bytes]:
        """Store an export's spans (protobuf or the OTLP JSON mapping, gzip or not); 400 names what is wrong."""
        media_type = request.content_type[0]
        if media_type not in (otlp.PROTOBUF, otlp.JSON):
            raise UnsupportedMediaType(
                f"the body is declared as {media_type!r}; OTLP/HTTP takes {otlp.PROTOBUF} or {otlp.JSON}",
                headers={"Accept": f"{otlp.PROTOBUF}, {otlp.JSON}"},
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise UnsupportedMediaType(
                f"content-encoding {encoding!r} is not accepted: send gzip or none",
                headers={"Accept-Encoding": "gzip, identity"},
            )
        body = await request.body()
        try:
            if encoding == "gzip":
                body = otlp.inflate(body, limit=settings.console_max_inflated_bytes)
            records = otlp.decode_export(body, media_type, max_spans=settings.console_max_spans_per_request)
        except otlp.BadExport as exc:
            raise BadRequest(str(exc)) from None
        await traces.store_spans(
            db, records, max_spans=settings.console_max_spans, masked=masked_names(settings.console_masked_fields)
        )
        return Response(otlp.encode_response(media_type), media_type=media_type)


class ConsoleApi(Controller):
    """What the pages read (JSON), and the actions they offer when the console is writable."""

    path = "/api"

    @get("/config", sync_to_thread=False)
    def config(self, state: State, settings: NamedDependency[ConsoleSettings]) -> ConsoleConfig:
        return ConsoleConfig(service=settings.service_name, version=state.service_version, write=settings.console_write)

    @get("/services")
    async def list_services(self, state: State) -> Instances:
        """Every registered instance: ready or not, version, request and error rates, p50 and p99."""
        _redis(state)
        prober: InstanceProber = state.prober
        return Instances(sorted(await prober.instances(), key=lambda i: (i.service, i.instance_id)))

    @get("/streams")
    async def list_streams(self, state: State) -> Streams:
        """Every stream: length, dead letters, and per group lag, pending, oldest pending, consumers."""
        return Streams(await streams.all_streams(_redis(state)))

    @get("/streams/{stream:str}/dead-letters")
    async def dead_letters(
        self,
        state: State,
        settings: NamedDependency[ConsoleSettings],
        stream: FromPath[str],
        count: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        after: Annotated[str | None, QueryParameter(pattern=r"^\d+-\d+$")] = None,
    ) -> DeadLetters:
        """The oldest dead letters of ``stream`` (after the id ``after``, for the next page)."""
        masked = masked_names(settings.console_masked_fields)
        return DeadLetters(await streams.dead_letters(_redis(state), stream, count=count, after=after, masked=masked))

    @get("/streams/{stream:str}/dead-letters/{dlq_id:str}", responses=problem_responses({404: "No such dead letter."}))
    async def dead_letter(
        self, state: State, settings: NamedDependency[ConsoleSettings], stream: FromPath[str], dlq_id: FromPath[str]
    ) -> streams.DeadLetterView:
        """One dead letter: why it failed, how often it was delivered, and its payload (masked fields hidden)."""
        masked = masked_names(settings.console_masked_fields)
        found = await streams.dead_letter(_redis(state), stream, _entry_id(dlq_id), masked=masked)
        if found is None:
            raise NotFound(f"no dead letter {dlq_id} on {stream}")
        return found

    @post(
        "/streams/{stream:str}/dead-letters/{dlq_id:str}/replay",
        status_code=200,
        responses=problem_responses(
            {
                401: "No authenticated caller.",
                403: "The console is read-only, or the caller is not an admin.",
                404: "No such dead letter (already replayed?).",
            }
        ),
    )
    async def replay(
        self,
        request: Request[Any, Any, Any],
        state: State,
        db: NamedDependency[Database],
        stream: FromPath[str],
        dlq_id: FromPath[str],
        data: JSONBody[ReplayRequest],
    ) -> Replayed:
        """Put one dead letter back on its stream, once. Needs CONSOLE_WRITE, the admin role, and
        ``confirm`` equal to the dead letter's id; every attempt by a known caller is audited."""
        settings: ConsoleSettings = state.settings
        caller = request.headers.get(CALLER_ID_HEADER, "")
        target = f"{stream} {dlq_id}"

        async def refuse(problem: Exception) -> Exception:
            if caller:
                await _record(db, caller, "replay dead letter", target, f"refused: {problem}")
            return problem

        if not settings.console_write:
            raise await refuse(Forbidden("the console is read-only (CONSOLE_WRITE is not true)"))
        if not caller:
            raise Unauthorized("replaying needs an authenticated caller with role 'admin'")
        if ADMIN_ROLE not in caller_roles(request):
            raise await refuse(Forbidden("replaying needs role 'admin'"))
        if data.confirm != dlq_id:
            raise await refuse(BadRequest(f"confirm must repeat the dead letter's id ({dlq_id})"))
        entry_id = _entry_id(dlq_id)
        lock: asyncio.Lock = state.replay_lock  # two clicks at once in this console replay once
        async with lock:
            done = await dlq.replay(_redis(state), stream, [entry_id])
        if not done:
            raise await refuse(NotFound(f"no dead letter {dlq_id} on {stream} (already replayed?)"))
        await _record(db, caller, "replay dead letter", target, "replayed")
        return Replayed(stream=stream, replayed=dlq_id)

    @get("/audit")
    async def audit(
        self, db: NamedDependency[Database], limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100
    ) -> Audit:
        """The latest actions asked for: who, what, when, and how they ended."""
        rows = await db.fetch_all(sa.select(_audit).order_by(_audit.c.id.desc()).limit(limit))
        return Audit(
            [AuditView(at=r.at, caller=r.caller, action=r.action, target=r.target, outcome=r.outcome) for r in rows]
        )

    @get("/traces")
    async def find_traces(
        self,
        db: NamedDependency[Database],
        service: Annotated[str | None, QueryParameter()] = None,
        operation: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(ok|error)$")] = None,
        min_duration_ms: Annotated[float | None, QueryParameter(ge=0)] = None,
        value: Annotated[str | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> Traces:
        """The newest traces matching every given criterion; ``value`` is any attribute's value
        (an order id, a correlation id)."""
        query = traces.TraceQuery(
            service=service or None,
            operation=operation or None,
            status=status,
            min_duration_ms=min_duration_ms,
            value=value or None,
            limit=limit,
        )
        return Traces(await traces.find_traces(db, query))

    @get("/traces/{trace_id:str}", responses=problem_responses({404: "The store holds no such trace."}))
    async def trace(self, db: NamedDependency[Database], trace_id: FromPath[str]) -> traces.TraceView:
        """One trace, every span with its parent, timing, attributes, events and links (the waterfall)."""
        found = await traces.read_trace(db, trace_id.lower())
        if found is None:
            raise NotFound(f"no trace {trace_id} in the store (never received, or dropped as one of the oldest)")
        return found


@get("/", include_in_schema=False, sync_to_thread=False)
def index() -> Response[bytes]:
    """The console's one page; its script shows services, streams and traces by the URL's fragment."""
    return Response((STATIC_DIRECTORY / "index.html").read_bytes(), media_type="text/html; charset=utf-8")


def _entry_id(text: str) -> str:
    if not text or not all(part.isdigit() for part in text.split("-", 1)) or text.count("-") != 1:
        raise BadRequest(f"{text[:64]!r} is not a stream entry id (<ms>-<seq>)")
    return text


async def _record(db: Database, caller: str, action: str, target: str, outcome: str) -> None:
    async with db.transaction() as session:
        await session.execute(
            sa.insert(_audit).values(
                at=datetime.now(UTC), caller=caller[:200], action=action, target=target[:500], outcome=outcome[:500]
            )
        )
