"""The console reads the services' JSON exports (flotilla_kit.otlp_json) exactly as it reads the same
spans encoded by the OpenTelemetry SDK's protobuf exporter."""

from __future__ import annotations

from console.otlp import JSON, PROTOBUF, decode_export
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.util.types import AttributeValue

from flotilla_kit.otlp_json import encode_spans_json


def _spans() -> list[ReadableSpan]:
    kept = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "orders", "service.version": "1.0.0"}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("flotilla_kit", "0.2.0")
    caller = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1))
    attributes: dict[str, AttributeValue] = {
        "http.route": "/orders",
        "http.response.status_code": 201,
        "ok": True,
        "ratio": 0.5,
        "ids": ("a",),
    }
    with tracer.start_as_current_span(
        "POST /orders", context=set_span_in_context(NonRecordingSpan(caller)), kind=SpanKind.SERVER,
        attributes=attributes,
    ):  # fmt: skip
        with tracer.start_as_current_span("INSERT orders", kind=SpanKind.CLIENT) as statement:
            statement.add_event("retry", {"attempt": 2})
        with tracer.start_as_current_span(
            "process orders.events", kind=SpanKind.CONSUMER, links=[Link(caller)]
        ) as span:
            span.set_status(Status(StatusCode.ERROR, "boom"))
            span.record_exception(ValueError("boom"))
    return list(kept.get_finished_spans())


def test_a_json_export_reads_as_the_same_spans_as_the_protobuf_one():
    spans = _spans()
    from_json = decode_export(encode_spans_json(spans), JSON, max_spans=100)
    from_protobuf = decode_export(encode_spans(spans).SerializeToString(), PROTOBUF, max_spans=100)
    assert len(from_json) == 3
    assert from_json == from_protobuf
