"""The console's HTTP API: OTLP ingestion, the read APIs its pages poll, the gated actions, and the pages."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import msgspec
import sqlalchemy as sa
from console import otlp, streams, traces
from console.actions import REDIS_PROBLEMS, entry_id_of, name_of, redis_of
from console.auth import SessionView, operator_of, require_operator, session_view
from console.instances import InstanceProber, InstanceView
from console.masking import masked_names
from console.models import AuditEntry
from console.sessions import Operator
from console.settings import ConsoleSettings
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from flotilla_contracts.orders import Order, OrderPage, OrderStatus, SagaCounts
from flotilla_http.errors import UpstreamError
from flotilla_kit.db import Database
from flotilla_kit.identity import CALLER_ID_HEADER, CALLER_ROLES_HEADER
from flotilla_kit.openapi import problem_responses
from flotilla_kit.pagination import as_utc
from flotilla_kit.problems import BadRequest, Forbidden, NotFound, ServiceUnavailable, UnsupportedMediaType
from orders_client import NotFoundError, OrdersClient, ServiceCallError

T = TypeVar("T")

STATIC_DIRECTORY = Path(__file__).parent / "static"
_audit = cast(sa.Table, AuditEntry.__table__)


class ConsoleConfig(msgspec.Struct, kw_only=True):
    service: str
    version: str
    write: bool  # whether actions are allowed at all (CONSOLE_WRITE)
    # A consumer idle this long may be presumed dead (its entries handed over).
    dead_consumer_idle_ms: int
    session: SessionView  # who is looking, and the CSRF token a cookie session's changes repeat


class Instances(msgspec.Struct):
    items: list[InstanceView]


class Streams(msgspec.Struct):
    items: list[streams.StreamView]


class DeadLetters(msgspec.Struct):
    items: list[streams.DeadLetterView]


class Traces(msgspec.Struct):
    items: list[traces.TraceSummary]


class AuditView(msgspec.Struct, kw_only=True):
    at: datetime
    caller: str
    action: str
    target: str
    outcome: str


class Audit(msgspec.Struct):
    items: list[AuditView]


_ORDERS_REFUSALS = {
    403: "The operator may not read every customer's orders (orders wants role 'admin').",
    503: "The orders service cannot be reached.",
}


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
    """What the pages read (JSON): for any authenticated operator (the sagas: for an admin, as orders decides)."""

    path = "/api"
    guards = [require_operator]
    exception_handlers = REDIS_PROBLEMS

    @get("/config", sync_to_thread=False)
    def config(
        self, request: Request[Any, Any, Any], state: State, settings: NamedDependency[ConsoleSettings]
    ) -> ConsoleConfig:
        """The console's mode and the operator's session."""
        return ConsoleConfig(
            service=settings.service_name,
            version=state.service_version,
            write=settings.console_write,
            dead_consumer_idle_ms=int(settings.console_dead_consumer_idle_seconds * 1000),
            session=session_view(operator_of(request)),
        )

    @get("/services")
    async def list_services(self, state: State) -> Instances:
        """Every registered instance: ready or not, version, request and error rates, p50 and p99."""
        redis_of(state)
        prober: InstanceProber = state.prober
        return Instances(sorted(await prober.instances(), key=lambda i: (i.service, i.instance_id)))

    @get("/streams")
    async def list_streams(self, state: State) -> Streams:
        """Every stream: length, dead letters, and per group lag, pending, oldest pending, consumers."""
        return Streams(await streams.all_streams(redis_of(state)))

    @get("/streams/{stream:str}/dead-letters")
    async def dead_letters(
        self,
        state: State,
        settings: NamedDependency[ConsoleSettings],
        stream: FromPath[str],
        count: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        after: Annotated[str | None, QueryParameter(pattern=r"^[0-9]{1,20}-[0-9]{1,20}$")] = None,
    ) -> DeadLetters:
        """The oldest dead letters of ``stream`` (after the id ``after``, for the next page)."""
        masked = masked_names(settings.console_masked_fields)
        client = redis_of(state)
        return DeadLetters(await streams.dead_letters(client, name_of(stream), count=count, after=after, masked=masked))

    @get("/streams/{stream:str}/dead-letters/{dlq_id:str}", responses=problem_responses({404: "No such dead letter."}))
    async def dead_letter(
        self, state: State, settings: NamedDependency[ConsoleSettings], stream: FromPath[str], dlq_id: FromPath[str]
    ) -> streams.DeadLetterView:
        """One dead letter: why it failed, how often it was delivered, and its payload (masked fields hidden)."""
        masked = masked_names(settings.console_masked_fields)
        found = await streams.dead_letter(redis_of(state), name_of(stream), entry_id_of(dlq_id), masked=masked)
        if found is None:
            raise NotFound(f"no dead letter {dlq_id} on {stream}")
        return found

    @get("/sagas", responses=problem_responses(_ORDERS_REFUSALS))
    async def sagas(
        self,
        request: Request[Any, Any, Any],
        state: State,
        status: Annotated[OrderStatus | None, QueryParameter()] = None,
        stuck: Annotated[bool, QueryParameter()] = False,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 50,
    ) -> OrderPage:
        """Orders by saga state, newest first, or the stuck ones (waiting past their step's deadline)."""
        orders = _orders(state)
        headers = _forwarded(operator_of(request))
        return await _from_orders(
            orders.list_sagas(status=status, stuck=stuck, cursor=cursor, limit=limit, headers=headers)
        )

    @get("/sagas/counts", responses=problem_responses(_ORDERS_REFUSALS))
    async def saga_counts(self, request: Request[Any, Any, Any], state: State) -> SagaCounts:
        """How many orders are in each saga state, and how many are stuck."""
        return await _from_orders(_orders(state).saga_counts(headers=_forwarded(operator_of(request))))

    @get("/sagas/{order_id:uuid}", responses=problem_responses({**_ORDERS_REFUSALS, 404: "No such order."}))
    async def saga(self, request: Request[Any, Any, Any], state: State, order_id: FromPath[uuid.UUID]) -> Order:
        """One order with its saga's history (the timeline); its traces are found by its id."""
        return await _from_orders(_orders(state).get_order(order_id, headers=_forwarded(operator_of(request))))

    @get("/audit")
    async def audit(
        self, db: NamedDependency[Database], limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100
    ) -> Audit:
        """The latest actions asked for: who, what, when, and how they ended."""
        rows = await db.fetch_all(sa.select(_audit).order_by(_audit.c.id.desc()).limit(limit))
        return Audit(
            [
                AuditView(at=as_utc(r.at), caller=r.caller, action=r.action, target=r.target, outcome=r.outcome)
                for r in rows
            ]
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


def _orders(state: State) -> OrdersClient:
    client: OrdersClient = state.orders
    return client


def _forwarded(operator: Operator) -> dict[str, str]:
    # The operator's own identity, so that orders decides what they may see, as for any caller.
    return {CALLER_ID_HEADER: operator.id, CALLER_ROLES_HEADER: ",".join(sorted(operator.roles))}


async def _from_orders(call: Awaitable[T]) -> T:
    """An orders call's answer; its refusals as the console's own problems."""
    try:
        return await call
    except NotFoundError as exc:
        raise NotFound(exc.detail) from None
    except ServiceCallError as exc:
        if exc.status == 403:
            raise Forbidden(f"orders refused: {exc.detail}") from None
        if exc.status == 400:
            raise BadRequest(f"orders refused: {exc.detail}") from None
        raise ServiceUnavailable(f"orders answered {exc.status}: {exc.detail}") from None
    except UpstreamError as exc:
        raise ServiceUnavailable(f"orders cannot be reached: {exc}") from None


@get("/", include_in_schema=False, sync_to_thread=False)
def index() -> Response[bytes]:
    """The console's one page; its script shows services, streams and traces by the URL's fragment."""
    return Response((STATIC_DIRECTORY / "index.html").read_bytes(), media_type="text/html; charset=utf-8")
