"""OpenTelemetry traces of a service: SERVER spans per request, database spans, messaging spans.

Tracing is on when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and
OTEL_SDK_DISABLED is not true. Then the app's start-up installs the SDK's TracerProvider as the
process's global provider (sampler from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, resource
named OTEL_SERVICE_NAME or the service's name), exporting with OTLP/HTTP (protobuf, or JSON
with OTEL_EXPORTER_OTLP_PROTOCOL=http/json: flotilla_kit.otlp_json) through a BatchSpanProcessor
(the exporter runs in the processor's thread, never in the event loop); its shutdown flushes what
is queued. Off, nothing is installed: no provider, no span hook in the
request layer, no database listeners; the HTTP client and the stream code find no provider
(``active_tracer`` is None) and take their untraced paths.

Spans and the request context stay in step: while a span is current (OTel's context), the
``flotilla_http.context.trace_var`` holds its ids, so logs carry them and code that only knows
``trace_var`` forwards the right parent.

The provider is global (the OpenTelemetry API allows one per process, set once): a service
process runs one app. Where several apps share a process (tests), the first one's provider
serves them all, and the others log a warning saying so.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Iterable, Mapping
from contextvars import Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)

from flotilla_http.context import TraceContext, parse_traceparent, span_context_of, trace_context_of, trace_var
from flotilla_http.metrics import method_label

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.id_generator import IdGenerator
    from opentelemetry.sdk.trace.sampling import Sampler
    from sqlalchemy.engine import Connection, Engine, ExceptionContext

    from flotilla_kit.db import Database
    from flotilla_kit.settings import ServiceSettings

log = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "flotilla_kit"
# Statement text beyond this is cut: enough to recognise a query, bounded for any batch insert.
MAX_STATEMENT_CHARS = 1000
# A relay batch links to each of its events' creation; the SDK keeps 128 links per span.
MAX_LINKS = 128
_SPAN_KEY = "_flotilla_span"


def tracing_enabled(settings: ServiceSettings) -> bool:
    """Whether ``settings`` turn tracing on: an OTLP endpoint is set and the SDK is not disabled."""
    return bool(traces_endpoint(settings)) and not settings.otel_sdk_disabled


def traces_endpoint(settings: ServiceSettings) -> str:
    """The OTLP/HTTP URL spans are posted to ("" when none is set).

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is; OTEL_EXPORTER_OTLP_ENDPOINT is a base
    URL to which ``/v1/traces`` is appended, as the OTLP exporter specification says.
    """
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return ""


def sampler_from(settings: ServiceSettings) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names, with OTEL_TRACES_SAMPLER_ARG as its ratio."""
    from opentelemetry.sdk.trace import sampling

    ratio = settings.otel_traces_sampler_arg
    samplers: dict[str, Sampler] = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return samplers[settings.otel_traces_sampler]


@dataclass(frozen=True)
class RootSampling:
    """Whether a new trace (a request without a sampled or unsampled parent) is sampled, decided
    from its trace id exactly as the configured sampler decides it.

    Deciding before the SDK is asked for a span means an unsampled request costs a random number
    and a comparison: the SDK would make ids, call the sampler, and build and attach a span object
    that records nothing. A sampled root is then started with the same trace id (``_RootIds``),
    so the SDK's sampler agrees and services sampling by trace id make the same decision.
    """

    bound: int  # sampled when the trace id's lower 64 bits are below it, as TraceIdRatioBased does

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> RootSampling:
        from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

        name = settings.otel_traces_sampler
        if name.endswith("always_on"):
            return cls(_TRACE_ID_LIMIT + 1)
        if name.endswith("always_off"):
            return cls(0)
        return cls(TraceIdRatioBased.get_bound_for_rate(settings.otel_traces_sampler_arg))

    def sampled(self, trace_id: int) -> bool:
        return trace_id & _TRACE_ID_LIMIT < self.bound


_TRACE_ID_LIMIT = (1 << 64) - 1


class RootIds(Protocol):
    """The provider's id generator: the next root's trace id can be given to it."""

    next_trace_id: int


def _root_ids() -> IdGenerator:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _RootIds(RandomIdGenerator):
        """The SDK's ids, except that the next root takes the trace id ServerSpans drew for it.

        Given and taken in one synchronous stretch of the event loop (no await between), so no
        other root can take it first.
        """

        next_trace_id = 0

        def generate_trace_id(self) -> int:
            trace_id, self.next_trace_id = self.next_trace_id, 0
            return trace_id or super().generate_trace_id()

    return _RootIds()


@dataclass
class Tracing:
    """The SDK's provider of one app, exporting to the OTLP endpoint; ``start`` installs it."""

    provider: TracerProvider
    endpoint: str
    roots: RootSampling
    root_ids: RootIds
    protocol: str = "http/protobuf"

    @classmethod
    def from_settings(cls, settings: ServiceSettings, *, version: str) -> Tracing:
        """A provider (not yet exporting, not yet global) for ``settings``; tracing must be enabled."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        resource = Resource.create(
            {
                "service.name": settings.otel_service_name or settings.service_name,
                "service.version": version,
                "service.instance.id": settings.resolved_instance_id(),
            }
        )
        root_ids = _root_ids()
        provider = TracerProvider(resource=resource, sampler=sampler_from(settings), id_generator=root_ids)
        protocol = settings.otel_exporter_otlp_traces_protocol or settings.otel_exporter_otlp_protocol
        roots = RootSampling.from_settings(settings)
        return cls(provider, traces_endpoint(settings), roots, root_ids, protocol)  # type: ignore[arg-type]

    def tracer(self, name: str = INSTRUMENTATION_NAME) -> Tracer:
        return self.provider.get_tracer(name)

    def start(self) -> None:
        """Start exporting (the batch processor's thread) and make this the process's provider."""
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if self.protocol == "http/json":
            from flotilla_kit.otlp_json import OtlpJsonSpanExporter

            exporter: SpanExporter = OtlpJsonSpanExporter(endpoint=self.endpoint)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=self.endpoint)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        if not isinstance(otel_trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider):
            log.warning(
                "another tracer provider is installed in this process already: the HTTP client's and"
                " the streams' spans go to that one, not to this app's"
            )
        else:
            otel_trace.set_tracer_provider(self.provider)
        _tracers[INSTRUMENTATION_NAME] = otel_trace.get_tracer_provider().get_tracer(INSTRUMENTATION_NAME)
        log.info("tracing to %s (%s)", self.endpoint, self.protocol)

    async def shutdown(self) -> None:
        """Export what is queued, then stop (in a thread: the exporter blocks on its HTTP posts)."""
        _tracers.clear()
        await asyncio.to_thread(self.provider.shutdown)


# ---------------------------------------------------------------------------- the global tracer

# The installed provider's tracers by name while an app's tracing runs (Tracing.start to shutdown):
# the one flag hot paths read. Off, it stays empty, and checking it costs a dict lookup.
_tracers: dict[str, Tracer] = {}


def active_tracer(name: str) -> Tracer | None:
    """The installed provider's tracer for ``name``, or None while tracing is off.

    Code on hot paths calls this per operation and takes its untraced path on None, so tracing
    off costs next to nothing.
    """
    if not _tracers:
        return None
    tracer = _tracers.get(name)
    if tracer is None:
        tracer = _tracers[name] = otel_trace.get_tracer_provider().get_tracer(name)
    return tracer


def annotate(name: str, value: str | int) -> None:
    """Set an attribute on the current span, if one records: say, the id of what a request created,
    so that its trace is found by that id (the console's trace search)."""
    if _tracers:
        span = otel_trace.get_current_span()
        if span.is_recording():
            span.set_attribute(name, value)


def _unsampled(parent: TraceContext | None) -> bool:
    # No span is made under an unsampled parent: the samplers keep a trace's decision (parent-based
    # ones by the flag, ratio ones by the same trace id), so such a span would only cost time.
    return parent is not None and not int(parent.flags[-1], 16) & 1


def _unsampled_traceparent(traceparent: str) -> bool:
    # True only where _unsampled(parse_traceparent(...)) is, at under half its cost (this runs for
    # every consumed event): the exact form producers write, with the sampled bit (the lowest of the
    # flags) clear. Anything else (upper case, another version, zero ids) goes the parsing way.
    return (
        _UNSAMPLED_TRACEPARENT.fullmatch(traceparent) is not None
        and traceparent[3:35] != _ZERO_TRACE_ID
        and traceparent[36:52] != _ZERO_SPAN_ID
    )


_UNSAMPLED_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f][02468ace]")
_ZERO_TRACE_ID, _ZERO_SPAN_ID = "0" * 32, "0" * 16


def _parent_context(parent: TraceContext | None) -> otel_context.Context:
    # An explicit empty context for a new trace: whatever span the caller's context holds is not
    # this request's parent.
    if parent is None:
        return otel_context.Context()
    return otel_trace.set_span_in_context(NonRecordingSpan(span_context_of(parent)), otel_context.Context())


class _Current:
    """Makes ``span`` current (OTel's context and ``trace_var``) until ``close``."""

    __slots__ = ("_otel_token", "_trace_token")

    def __init__(self, span: Span) -> None:
        self._otel_token = otel_context.attach(otel_trace.set_span_in_context(span))
        self._trace_token: Token[TraceContext | None] = trace_var.set(trace_context_of(span.get_span_context()))

    def close(self) -> None:
        trace_var.reset(self._trace_token)
        otel_context.detach(self._otel_token)


def _record_error(span: Span, error: BaseException) -> None:
    if span.is_recording():
        span.record_exception(error)
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


# ---------------------------------------------------------------------------- requests


class ServerSpans:
    """A SERVER span per request, made by flotilla_kit.middleware.RequestContextMiddleware.

    The span continues the caller's ``traceparent``; it is named by the route template once the
    route is known (``GET /products/{product_id:uuid}``), carries the http.* attributes of the
    semantic conventions, and has an error status for a 5xx answer or an exception.
    """

    def __init__(self, tracing: Tracing) -> None:
        self.tracer = tracing.tracer()
        self.roots = tracing.roots
        self.root_ids = tracing.root_ids

    def start(self, method: str, parent: TraceContext | None) -> tuple[Span | None, TraceContext, Token[Any] | None]:
        """Start and make current the span of a request; returns it, its trace context and the
        token ``finish`` needs (the caller sets ``trace_var`` to the trace context itself).

        A request that is not sampled (its parent's flag says so, or the sampler says so of a new
        trace) gets no span (None, and no token): only the trace context it goes on with.
        """
        if parent is None:
            trace_id = random.getrandbits(128) or 1
            if not self.roots.sampled(trace_id):
                return None, TraceContext(trace_id.to_bytes(16, "big").hex(), "0" * 16, "00").child(), None
            self.root_ids.next_trace_id = trace_id
        elif _unsampled(parent):
            return None, parent.child(), None
        span = self.tracer.start_span(method_label(method), context=_parent_context(parent), kind=SpanKind.SERVER)
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        return span, trace_context_of(span.get_span_context()), token

    def finish(
        self,
        span: Span,
        token: Token[Any],
        scope: Mapping[str, Any],
        route: str | None,
        status: int,
        error: BaseException | None,
    ) -> None:
        """End the request's span with what the answer was."""
        otel_context.detach(token)
        if span.is_recording():
            method = method_label(scope["method"])
            if route is not None:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attributes(
                {
                    "http.request.method": method,
                    "url.path": scope["path"],
                    "url.scheme": scope.get("scheme", "http"),
                    "network.protocol.version": scope.get("http_version", "1.1"),
                    "http.response.status_code": status,
                }
            )
            query = scope.get("query_string")
            if query:
                span.set_attribute("url.query", query.decode("latin-1"))
            client = scope.get("client")
            if client:
                span.set_attribute("client.address", client[0])
            if error is not None:
                _record_error(span, error)
            elif status >= 500:
                span.set_attribute("error.type", str(status))
                span.set_status(Status(StatusCode.ERROR))
        span.end()


def record_handler_exception(exception: Exception, scope: Any) -> None:
    """Litestar ``after_exception`` hook: a handler's error on the request's span.

    Litestar turns a handler's exception into an answer itself, so the request layer only sees
    the status; this keeps the exception (type, message, stack) on the span. Client errors (an
    HTTPException below 500: not found, validation) are the caller's, not the service's: left out.
    """
    status = getattr(exception, "status_code", 500)
    if isinstance(status, int) and status < 500:
        return
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.record_exception(exception)


# ---------------------------------------------------------------------------- the database


def instrument_database(db: Database, tracer: Tracer) -> None:
    """A CLIENT span per statement on ``db``'s engines, inside a traced operation only.

    Statements outside any sampled span (pollers, migrations, readiness checks) get none: they
    would each be a one-span trace. The span holds the statement text as SQLAlchemy sends it, with
    placeholders and cut at MAX_STATEMENT_CHARS, never the parameters.
    """
    backend = "postgresql" if not db.is_sqlite else "sqlite"
    base: dict[str, str | int] = {"db.system.name": backend, "db.system": backend}
    namespace = db.url.database or ""
    if not db.is_sqlite:
        if namespace:
            base["db.namespace"] = namespace
        if db.url.host:
            base["server.address"] = db.url.host
        if db.url.port:
            base["server.port"] = db.url.port
    target = namespace if not db.is_sqlite else ""
    for engine in db.sync_engines():
        _listen(engine, tracer, base, target)


def _listen(engine: Engine, tracer: Tracer, base: Mapping[str, str | int], target: str) -> None:
    from sqlalchemy import event

    def before(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if context is None or not otel_trace.get_current_span().is_recording():
            return
        operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        name = f"{operation} {target}".strip() or str(base["db.system.name"])
        span = tracer.start_span(name, kind=SpanKind.CLIENT)
        if span.is_recording():
            span.set_attributes(base)
            span.set_attribute("db.query.text", statement[:MAX_STATEMENT_CHARS])
            if operation:
                span.set_attribute("db.operation.name", operation)
        setattr(context, _SPAN_KEY, span)

    def after(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        span = getattr(context, _SPAN_KEY, None)
        if span is not None:
            setattr(context, _SPAN_KEY, None)
            span.end()

    def failed(exception_context: ExceptionContext) -> None:
        span = getattr(exception_context.execution_context, _SPAN_KEY, None)
        if span is not None:
            setattr(exception_context.execution_context, _SPAN_KEY, None)
            _record_error(span, exception_context.original_exception)
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


# ---------------------------------------------------------------------------- messaging

_MESSAGING_TRACER = "flotilla_streams"


def _messaging_attributes(operation: str, operation_type: str, stream: str | None) -> dict[str, str]:
    attributes = {
        "messaging.system": "redis",
        "messaging.operation": operation,  # the name older conventions and many backends know
        "messaging.operation.name": operation,
        "messaging.operation.type": operation_type,
    }
    if stream is not None:
        attributes["messaging.destination.name"] = stream
    return attributes


class ProducerSpan:
    """A PRODUCER span around putting events on a stream (``with``); None-safe for tracing off.

    ``traceparent`` is what the events' envelopes carry: this span's context, which consumers
    link to. Made with ``producing``.
    """

    __slots__ = ("span", "traceparent", "_current")

    def __init__(self, tracer: Tracer, stream: str, operation: str, operation_type: str) -> None:
        self.span = tracer.start_span(
            f"{operation} {stream}",
            kind=SpanKind.PRODUCER,
            attributes=_messaging_attributes(operation, operation_type, stream),
        )
        self.traceparent = trace_context_of(self.span.get_span_context()).traceparent
        self._current: _Current | None = None

    def messages(self, ids: list[str]) -> None:
        """Name the events put on the stream (their ids), once their envelopes exist."""
        if self.span.is_recording():
            if len(ids) == 1:
                self.span.set_attribute("messaging.message.id", ids[0])
            else:
                self.span.set_attribute("messaging.batch.message_count", len(ids))

    def __enter__(self) -> ProducerSpan:
        self._current = _Current(self.span)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._current is not None:
            self._current.close()
        if error is not None:
            _record_error(self.span, error)
        self.span.end()


def producing(stream: str, *, operation: str = "publish", operation_type: str = "send") -> ProducerSpan | None:
    """A PRODUCER span for events put on ``stream``, or None while tracing is off.

    ``operation_type`` "send" for events sent at once (the publisher), "create" for events written
    to the outbox, to be sent by its relay.
    """
    tracer = active_tracer(_MESSAGING_TRACER)
    if tracer is None or not _current_may_sample():
        return None
    return ProducerSpan(tracer, stream, operation, operation_type)


def _current_may_sample() -> bool:
    # The current span's decision, else trace_var's (code that only set that), else a new root's.
    current = otel_trace.get_current_span().get_span_context()
    if current.is_valid:
        return current.trace_flags.sampled
    return not _unsampled(trace_var.get())


class _RelaySpan:
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> _RelaySpan:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is not None:
            _record_error(self.span, error)
        self.span.end()


def relaying(messages: Iterable[tuple[str, str | None, str]]) -> _RelaySpan | None:
    """A PRODUCER span for one outbox relay batch, or None while tracing is off.

    ``messages`` are (stream, traceparent, event id) of the batch's events: the span links to the
    context each was created in (its ``create`` span), up to MAX_LINKS.
    """
    tracer = active_tracer(_MESSAGING_TRACER)
    if tracer is None:
        return None
    streams: set[str] = set()
    links: list[Link] = []
    count = 0
    for stream, traceparent, event_id in messages:
        count += 1
        streams.add(stream)
        parent = parse_traceparent(traceparent)
        if parent is not None and len(links) < MAX_LINKS:
            links.append(Link(span_context_of(parent), {"messaging.message.id": event_id}))
    destination = next(iter(streams)) if len(streams) == 1 else None
    attributes: dict[str, str | int] = {
        **_messaging_attributes("relay", "send", destination),
        "messaging.batch.message_count": count,
    }
    span = tracer.start_span(
        f"relay {destination or 'outbox'}",
        context=otel_context.Context(),
        kind=SpanKind.PRODUCER,
        links=links,
        attributes=attributes,
    )
    return _RelaySpan(span)


class ConsumerSpan:
    """A CONSUMER span around handling one event (``with``); made with ``consuming``.

    The producer's context carried in the envelope is both the span's parent (the stream hop
    stays inside the producer's trace, and its sampling decision is kept) and its link, as the
    messaging conventions ask of a consumer. While it runs it is current, so the handler's logs,
    database statements, calls and follow-up events belong to it.
    """

    __slots__ = ("span", "_current")

    def __init__(
        self, tracer: Tracer, stream: str, group: str, event_id: str, event_type: str, correlation_id: str,
        traceparent: str | None, deliveries: int,
    ) -> None:  # fmt: skip
        producer = parse_traceparent(traceparent)
        if producer is None:
            context, links = otel_context.Context(), None
        else:
            producer_context = span_context_of(producer)
            context = otel_trace.set_span_in_context(NonRecordingSpan(producer_context), otel_context.Context())
            links = [Link(producer_context)]
        attributes: dict[str, str | int] = {
            **_messaging_attributes("process", "process", stream),
            "messaging.consumer.group.name": group,
            "messaging.message.id": event_id,
            "messaging.message.conversation_id": correlation_id,
            "messaging.message.delivery_count": deliveries,
            "flotilla.event.type": event_type,
        }
        self.span = tracer.start_span(
            f"process {stream}",
            context=context,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        )
        self._current: _Current | None = None

    def __enter__(self) -> ConsumerSpan:
        self._current = _Current(self.span)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._current is not None:
            self._current.close()
        if error is not None:
            _record_error(self.span, error)
        self.span.end()


def consuming(
    stream: str,
    group: str,
    *,
    event_id: str,
    event_type: str,
    correlation_id: str,
    traceparent: str | None,
    deliveries: int,
) -> ConsumerSpan | None:
    """A CONSUMER span for handling one event of ``stream`` in ``group``, or None while tracing is off."""
    tracer = active_tracer(_MESSAGING_TRACER)
    if tracer is None or (traceparent is not None and _unsampled_traceparent(traceparent)):
        return None
    return ConsumerSpan(tracer, stream, group, event_id, event_type, correlation_id, traceparent, deliveries)
