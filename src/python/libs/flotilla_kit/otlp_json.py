"""OTLP/HTTP with the JSON encoding (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json).

The OpenTelemetry SDK exports only protobuf over HTTP, and builds a protobuf message object per
span, attribute and value before serializing: about 65-130 us per span on these machines, spent
in the exporter's thread but under the interpreter lock, so it is taken from the service's own
work. Here each span becomes plain dicts and lists that msgspec serializes in one C call, about a
third of that. The bytes follow the OTLP specification's JSON encoding (the protobuf JSON mapping,
with trace and span ids in hex, enums as integers and 64-bit integers as strings); every OTLP
receiver accepts it, among them the OpenTelemetry Collector and this platform's console.

Everything else (endpoint, headers, timeout, compression, TLS, retries) is the SDK's OTLP/HTTP
exporter's: ``OtlpJsonSpanExporter`` only replaces how a batch is encoded.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

log = logging.getLogger(__name__)

_ENCODER = msgspec.json.Encoder()
# Span.flags in OTLP: bit 8 says whether bit 9 (the parent, or a link's target, is remote) is known.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class OtlpJsonSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, posting ``application/json`` instead of protobuf."""

    def __init__(self, endpoint: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(endpoint=endpoint, headers={**(headers or {}), "content-type": "application/json"})

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("exporter already shut down: %d spans dropped", len(spans))
            return SpanExportResult.FAILURE
        try:
            body = encode_spans_json(spans)
        except Exception:  # a bad attribute must not stop the exporter's thread
            log.exception("could not encode %d spans: dropped", len(spans))
            return SpanExportResult.FAILURE
        result = self._client.export(body)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


def encode_spans_json(spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest in OTLP's JSON encoding: spans grouped by resource, then by
    instrumentation scope, in the order they come (as the SDK's protobuf encoder groups them)."""
    by_resource: dict[Any, dict[Any, list[dict[str, Any]]]] = {}
    for span in spans:
        scopes = by_resource.get(span.resource)
        if scopes is None:
            scopes = by_resource[span.resource] = {}
        scope = span.instrumentation_scope
        encoded = scopes.get(scope)
        if encoded is None:
            encoded = scopes[scope] = []
        encoded.append(_span(span))
    resource_spans = []
    for resource, scopes in by_resource.items():
        scope_spans = []
        for scope, encoded in scopes.items():
            entry: dict[str, Any] = {"scope": _scope(scope), "spans": encoded}
            if scope is not None and scope.schema_url:
                entry["schemaUrl"] = scope.schema_url
            scope_spans.append(entry)
        resource_entry: dict[str, Any] = {
            "resource": {"attributes": _attributes(resource.attributes)},
            "scopeSpans": scope_spans,
        }
        if resource.schema_url:
            resource_entry["schemaUrl"] = resource.schema_url
        resource_spans.append(resource_entry)
    return _ENCODER.encode({"resourceSpans": resource_spans})


def _scope(scope: Any) -> dict[str, Any]:
    if scope is None:
        return {}
    encoded: dict[str, Any] = {"name": scope.name}
    if scope.version:
        encoded["version"] = scope.version
    if scope.attributes:
        encoded["attributes"] = _attributes(scope.attributes)
    return encoded


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None  # an ended SDK span always has one
    parent = span.parent
    encoded: dict[str, Any] = {
        "traceId": context.trace_id.to_bytes(16, "big").hex(),
        "spanId": context.span_id.to_bytes(8, "big").hex(),
        "name": span.name,
        "kind": span.kind.value + 1,  # the API counts from INTERNAL = 0, OTLP from UNSPECIFIED = 0
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
        "attributes": _attributes(span.attributes),
        "flags": _flags(parent),
    }
    if context.trace_state:
        encoded["traceState"] = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    if parent is not None:
        encoded["parentSpanId"] = parent.span_id.to_bytes(8, "big").hex()
    if span.events:
        encoded["events"] = [
            _counted(
                {"timeUnixNano": str(event.timestamp), "name": event.name, "attributes": _attributes(event.attributes)},
                event.dropped_attributes,
            )
            for event in span.events
        ]
    if span.links:
        encoded["links"] = [
            _counted(
                {
                    "traceId": link.context.trace_id.to_bytes(16, "big").hex(),
                    "spanId": link.context.span_id.to_bytes(8, "big").hex(),
                    "attributes": _attributes(link.attributes),
                    "flags": _flags(link.context),
                },
                link.dropped_attributes,
            )
            for link in span.links
        ]
    status = span.status
    if status.status_code.value or status.description:
        encoded["status"] = {"code": status.status_code.value, "message": status.description or ""}
    else:
        encoded["status"] = {}
    _counted(encoded, span.dropped_attributes)
    if span.dropped_events:
        encoded["droppedEventsCount"] = span.dropped_events
    if span.dropped_links:
        encoded["droppedLinksCount"] = span.dropped_links
    return encoded


def _counted(encoded: dict[str, Any], dropped_attributes: int) -> dict[str, Any]:
    if dropped_attributes:
        encoded["droppedAttributesCount"] = dropped_attributes
    return encoded


def _flags(context: SpanContext | None) -> int:
    if context is not None and context.is_remote:
        return _HAS_IS_REMOTE | _IS_REMOTE
    return _HAS_IS_REMOTE


def _attributes(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if not attributes:
        return []
    encoded = []
    for key, value in attributes.items():
        # An attribute that has no encoding is left out, not the batch: as the SDK's encoder does.
        try:
            encoded.append({"key": _text(key), "value": _value(value)})
        except (TypeError, ValueError) as error:
            log.warning("attribute %r left out of the export: %s", key, error)
    return encoded


def _text(value: str) -> str:
    # JSON text is UTF-8: a lone surrogate (from a bytes value decoded with surrogateescape) has none.
    if not value.isascii():
        value.encode("utf-8")  # raises UnicodeEncodeError, a ValueError
    return value


def _value(value: Any) -> dict[str, Any]:
    # bool before int (a bool is an int); the order and the cases are the SDK encoder's.
    if isinstance(value, str):
        return {"stringValue": _text(value)}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"{value} is outside OTLP's 64-bit integers")
        return {"intValue": str(value)}
    if isinstance(value, float):
        # JSON has no NaN or infinities: the protobuf JSON mapping spells them as strings.
        return {"doubleValue": value if math.isfinite(value) else _NON_FINITE[str(value)]}
    if value is None:
        return {}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [{"key": str(key), "value": _value(item)} for key, item in value.items()]}}
    raise TypeError(f"attribute value of type {type(value).__name__} has no OTLP encoding: {value!r}")
