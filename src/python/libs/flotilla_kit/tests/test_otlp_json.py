"""OTLP's JSON encoding of spans, checked against the SDK's own protobuf encoder: the same spans,
read back by protobuf's JSON parser, must be the very message the SDK would have posted."""

from __future__ import annotations

import math

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
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
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AttributeValue

from flotilla_kit.otlp_json import _value, encode_spans_json
from flotilla_kit.testing.otlp import request_from_json


def _provider(kept: InMemorySpanExporter, service: str, **limits: int) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": "i-1"}, schema_url="https://s/1"),
        span_limits=SpanLimits(**limits) if limits else None,
    )
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider


def _remote(trace_id: int, span_id: int, *, sampled: bool = True, state: TraceState | None = None) -> SpanContext:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags, trace_state=state)


def _every_kind_of_span() -> list[ReadableSpan]:
    kept = InMemorySpanExporter()
    shop = _provider(kept, "shop")
    tracer = shop.get_tracer("flotilla_kit", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0")
    other_scope = shop.get_tracer("flotilla_streams")
    remote = set_span_in_context(
        NonRecordingSpan(
            _remote(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, state=TraceState([("v", "1")]))
        )
    )
    attributes: dict[str, AttributeValue] = {
        "text": 'Grüße \u2028 "quoted" \\ </script>',
        "empty": "",
        "yes": True,
        "no": False,
        "count": 42,
        "negative": -(2**63),
        "largest": 2**63 - 1,
        "ratio": 0.25,
        "not a number": math.nan,
        "too big": math.inf,
        "too small": -math.inf,
        "words": ("a", "b"),
        "numbers": [1, 2, 3],
        "flags": [True, False],
        "reals": (1.5, -0.0),
        "nothing": (),
    }
    with tracer.start_as_current_span("GET /items/{id}", context=remote, kind=SpanKind.SERVER, attributes=attributes):
        with tracer.start_as_current_span("SELECT shop", kind=SpanKind.CLIENT) as child:
            child.add_event("retry", {"attempt": 2}, timestamp=1_700_000_000_000_000_001)
        links = [
            Link(_remote(1, 2), {"messaging.message.id": "1-0"}),
            Link(_remote(3, 4, sampled=False)),
            Link(SpanContext(5, 6, is_remote=False)),
        ]
        with other_scope.start_as_current_span("process orders.events", kind=SpanKind.CONSUMER, links=links) as span:
            span.set_status(Status(StatusCode.ERROR, "HandlerError: boom"))
            try:
                raise ValueError("bad \x00 input")
            except ValueError as error:
                span.record_exception(error)
        with other_scope.start_as_current_span("publish orders.events", kind=SpanKind.PRODUCER) as span:
            span.set_status(Status(StatusCode.OK))
        with tracer.start_as_current_span("internal", kind=SpanKind.INTERNAL):
            pass
    # Another resource, with limits that drop attributes, events and links (the counts are encoded).
    limited = _provider(kept, "limited", max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1)
    with limited.get_tracer("x").start_as_current_span(
        "limited", attributes={"a": 1, "b": 2, "c": 3}, links=[Link(_remote(7, 8)), Link(_remote(9, 10))]
    ) as span:
        span.add_event("first", {"a": 1, "b": 2})
        span.add_event("second")
    # A span of a tracer without a version or schema, with no attributes at all.
    with shop.get_tracer("bare").start_as_current_span(
        "bare", context=set_span_in_context(NonRecordingSpan(_remote(11, 12)))
    ):
        pass
    return list(kept.get_finished_spans())


def test_the_json_encoding_is_the_message_the_sdk_encoder_makes():
    spans = _every_kind_of_span()
    assert len(spans) == 7
    assert request_from_json(encode_spans_json(spans)) == encode_spans(spans)


def test_one_span_at_a_time_encodes_the_same_as_the_sdk_too():
    for span in _every_kind_of_span():
        assert request_from_json(encode_spans_json([span])) == encode_spans([span]), span.name


def test_nothing_to_export_is_an_empty_request():
    assert request_from_json(encode_spans_json([])) == encode_spans([])


def test_a_value_without_an_otlp_encoding_is_named():
    with pytest.raises(TypeError, match="object"):
        _value(object())


def test_non_finite_reals_are_spelled_as_the_protobuf_json_mapping_says():
    # Protobuf's own parser also takes Python's spellings ("inf"), so this checks the bytes.
    assert [_value(x) for x in (math.nan, math.inf, -math.inf)] == [
        {"doubleValue": "NaN"},
        {"doubleValue": "Infinity"},
        {"doubleValue": "-Infinity"},
    ]


@pytest.mark.parametrize("bad", ["bad input \udcff", 2**63, -(2**63) - 1, ("ok", 2**64)])
def test_an_attribute_without_an_encoding_is_left_out_and_the_rest_of_the_batch_is_sent(bad):
    kept = InMemorySpanExporter()
    tracer = _provider(kept, "shop").get_tracer("t")
    for number in range(3):
        with tracer.start_as_current_span(f"span {number}", attributes={"good": number, "bad": bad}):
            pass
    spans = list(kept.get_finished_spans())
    # What the SDK's protobuf encoder sends for the same spans: the bad attribute dropped, the rest kept.
    assert request_from_json(encode_spans_json(spans)) == encode_spans(spans)
    sent = request_from_json(encode_spans_json(spans)).resource_spans[0].scope_spans[0].spans
    assert [[a.key for a in span.attributes] for span in sent] == [["good"]] * 3
