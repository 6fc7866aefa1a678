"""A real OTLP/HTTP trace receiver for tests: POST /v1/traces with protobuf or JSON, on a free port.

It runs an aiohttp server in a thread of its own, so that the test may block (waiting for a
process, stopping it) while services post their spans to it.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf import json_format  # pants: no-infer-dep (comes with opentelemetry-proto)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from flotilla_kit.testing.ports import free_port

# SpanKind in the OTLP protobuf.
KIND = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    events: list[str]  # names ("exception", ...)
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id)


class OtlpReceiver:
    """Collects the spans posted to ``endpoint`` + /v1/traces; ``spans`` is what arrived so far."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.posts = 0
        self.content_types: set[str] = set()  # of the exports received
        self._spans: list[ReceivedSpan] = []
        self._received = threading.Condition()  # notified at every export that arrives
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="otlp receiver", daemon=True)

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._received:
            return list(self._spans)

    def wait_for(self, predicate: Any, *, timeout: float = 30.0, what: str = "spans") -> list[ReceivedSpan]:
        """Wait until ``predicate(spans)`` is true, checked at every export; return the spans then.
        Raises TimeoutError."""
        with self._received:
            if self._received.wait_for(lambda: predicate(list(self._spans)), timeout):
                return list(self._spans)
            names = sorted({(s.service, s.kind, s.name) for s in self._spans})
        raise TimeoutError(f"{what} not received within {timeout}s; received: {names}")

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the OTLP receiver did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", self._receive)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._started.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _receive(self, request: web.Request) -> web.Response:
        if request.content_type not in ("application/x-protobuf", "application/json"):
            return web.Response(status=415)
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if request.content_type == "application/json":
            export = request_from_json(body)
        else:
            export = ExportTraceServiceRequest()
            export.ParseFromString(body)
        received = list(_spans_of(export))
        with self._received:
            self.posts += 1
            self.content_types.add(request.content_type)
            self._spans.extend(received)
            self._received.notify_all()
        if request.content_type == "application/json":
            return web.json_response({})
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )


def request_from_json(body: bytes) -> ExportTraceServiceRequest:
    """An export in OTLP's JSON encoding, read by protobuf's own JSON parser (the reference).

    OTLP's JSON differs from the protobuf JSON mapping in one place: trace and span ids are hex,
    not base64. They are turned into base64 first; a malformed export raises.
    """
    document = json.loads(body)
    for resource_spans in document.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for item in (span, *span.get("links", ())):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in item:
                            item[key] = base64.b64encode(bytes.fromhex(item[key])).decode("ascii")
    return json_format.ParseDict(document, ExportTraceServiceRequest())


def _spans_of(export: ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for resource_spans in export.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ReceivedSpan(
                    service=service,
                    name=span.name,
                    kind=KIND.get(span.kind, str(span.kind)),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    attributes=_attributes(span.attributes),
                    status_code=span.status.code,
                    events=[event.name for event in span.events],
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                )


def reset_global_tracer_provider() -> None:
    """Forget the process's tracer provider, so that the next app installs its own.

    The OpenTelemetry API sets it once per process (as services run: one app each); tests build
    many apps in one process. Private attributes, as OpenTelemetry's own test utilities reset them.
    """
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
