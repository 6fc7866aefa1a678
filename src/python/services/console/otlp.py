"""OTLP/HTTP trace exports decoded into plain span records: protobuf, or the OTLP JSON mapping, gzip or not.

The JSON mapping differs from protobuf's canonical one where OTLP says so: trace and span ids are
hex strings (not base64), enums are integers, 64-bit integers may come as strings. Every way a
body can be unusable raises ``BadExport`` with a message naming what is wrong; nothing here does
I/O. Limits are the caller's settings: how far a gzip body may inflate, how many spans one export
may carry.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# SpanKind of OTLP, by number (the JSON mapping's form) and by enum name (accepted too).
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
_KIND_NUMBERS = {f"SPAN_KIND_{name}": number for number, name in KINDS.items()}
_STATUS_NUMBERS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
STATUS_NAMES = {0: "unset", 1: "ok", 2: "error"}
_MAX_ATTRIBUTE_DEPTH = 8  # nested arrays and maps deeper than this are refused


class BadExport(ValueError):
    """The body is no usable OTLP trace export; the message says why (for a 400 answer)."""


class TooManySpans(BadExport):
    """The export carries more spans than one request may."""


@dataclass(frozen=True)
class SpanRecord:
    """One span as the console stores it: ids in lower-case hex, times in Unix nanoseconds."""

    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    service: str
    instance: str
    name: str
    kind: str  # SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL, UNSPECIFIED
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)  # name, time_ns, attributes
    links: list[dict[str, Any]] = field(default_factory=list)  # trace_id, span_id, attributes

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


def inflate(body: bytes, *, limit: int) -> bytes:
    """The gzip ``body`` inflated; raises BadExport when it is not gzip or inflates past ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadExport(f"the body is declared gzip but is not: {exc}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise BadExport(f"the body inflates past {limit} bytes")
    if not inflater.eof:
        raise BadExport("the gzip body ends early")
    return inflated


def decode_export(body: bytes, media_type: str, *, max_spans: int) -> list[SpanRecord]:
    """The spans of one export ``body`` of ``media_type`` (protobuf or JSON).

    Raises BadExport for a body that does not decode or breaks the OTLP rules (ids of the wrong
    length), TooManySpans past ``max_spans`` (checked before any span is converted).
    """
    if media_type == PROTOBUF:
        records = _from_protobuf(body, max_spans)
    elif media_type == JSON:
        records = _from_json(body, max_spans)
    else:
        raise BadExport(f"unsupported media type {media_type!r}")
    for record in records:
        _check_times(record)
    return records


def encode_response(media_type: str) -> bytes:
    """The success answer to an export, in the request's encoding (no partial success to report)."""
    return ExportTraceServiceResponse().SerializeToString() if media_type == PROTOBUF else b"{}"


# --- protobuf


def _from_protobuf(body: bytes, max_spans: int) -> list[SpanRecord]:
    export = ExportTraceServiceRequest()
    try:
        export.ParseFromString(body)
    except Exception as exc:  # protobuf's DecodeError (its module is not a dependency of ours to import)
        raise BadExport(f"the body is not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    _check_count(sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans), max_spans)
    return _records(export, _PROTOBUF_FIELDS)


def _proto_id(raw: bytes, size: int, name: str, *, optional: bool = False) -> str:
    if not raw and optional:
        return ""
    if len(raw) != size or not any(raw):
        raise BadExport(f"{name} must be {size} bytes, not all zero (got {len(raw)} bytes)")
    return raw.hex()


def _proto_attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _proto_value(pair.value, 0) for pair in pairs}


def _proto_value(value: Any, depth: int) -> Any:
    if depth > _MAX_ATTRIBUTE_DEPTH:
        raise BadExport(f"an attribute value nests deeper than {_MAX_ATTRIBUTE_DEPTH} levels")
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_proto_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _proto_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which) if which else None


# --- JSON (the OTLP JSON mapping)


class _AnyValue(msgspec.Struct, rename="camel", omit_defaults=True):
    string_value: str | None = None
    bool_value: bool | None = None
    int_value: int | None = None
    double_value: float | None = None
    bytes_value: str | None = None
    array_value: _ArrayValue | None = None
    kvlist_value: _KvList | None = None


class _KeyValue(msgspec.Struct, rename="camel"):
    key: str
    value: _AnyValue = msgspec.field(default_factory=_AnyValue)


class _ArrayValue(msgspec.Struct, rename="camel"):
    values: list[_AnyValue] = []


class _KvList(msgspec.Struct, rename="camel"):
    values: list[_KeyValue] = []


class _Resource(msgspec.Struct, rename="camel"):
    attributes: list[_KeyValue] = []


class _Status(msgspec.Struct, rename="camel"):
    code: int | str = 0
    message: str = ""


class _Event(msgspec.Struct, rename="camel"):
    time_unix_nano: int = 0
    name: str = ""
    attributes: list[_KeyValue] = []


class _Link(msgspec.Struct, rename="camel"):
    trace_id: str
    span_id: str
    attributes: list[_KeyValue] = []


class _Span(msgspec.Struct, rename="camel"):
    trace_id: str
    span_id: str
    name: str = ""
    parent_span_id: str = ""
    kind: int | str = 0
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0
    attributes: list[_KeyValue] = []
    events: list[_Event] = []
    links: list[_Link] = []
    status: _Status = msgspec.field(default_factory=_Status)


class _ScopeSpans(msgspec.Struct, rename="camel"):
    spans: list[_Span] = []


class _ResourceSpans(msgspec.Struct, rename="camel"):
    resource: _Resource = msgspec.field(default_factory=_Resource)
    scope_spans: list[_ScopeSpans] = []


class _Export(msgspec.Struct, rename="camel"):
    resource_spans: list[_ResourceSpans] = []


# Lax: OTLP's JSON mapping writes 64-bit integers as strings ("1700000000000000000").
_json_decoder = msgspec.json.Decoder(_Export, strict=False)


def _from_json(body: bytes, max_spans: int) -> list[SpanRecord]:
    try:
        export = _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadExport(f"the body is not an OTLP export in JSON: {exc}") from None
    _check_count(sum(len(s.spans) for r in export.resource_spans for s in r.scope_spans), max_spans)
    return _records(export, _JSON_FIELDS)


def _hex_id(text: str, size: int, name: str, *, optional: bool = False) -> str:
    if not text and optional:
        return ""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise BadExport(f"{name} must be {size * 2} hex digits, not {text[:64]!r}") from None
    if len(raw) != size or not any(raw):
        raise BadExport(f"{name} must be {size * 2} hex digits, not all zero (got {text[:64]!r})")
    return raw.hex()


def _enum(value: int | str, names: dict[str, int], field_name: str) -> int:
    if isinstance(value, int):
        return value
    if value in names:
        return names[value]
    raise BadExport(f"{field_name} {value[:64]!r} is not one of {sorted(names)} nor a number")


def _json_attributes(pairs: list[_KeyValue]) -> dict[str, Any]:
    return {pair.key: _json_value(pair.value, 0) for pair in pairs}


def _json_value(value: _AnyValue, depth: int) -> Any:
    if depth > _MAX_ATTRIBUTE_DEPTH:
        raise BadExport(f"an attribute value nests deeper than {_MAX_ATTRIBUTE_DEPTH} levels")
    if value.array_value is not None:
        return [_json_value(v, depth + 1) for v in value.array_value.values]
    if value.kvlist_value is not None:
        return {kv.key: _json_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    for scalar in (value.string_value, value.bool_value, value.int_value, value.double_value, value.bytes_value):
        if scalar is not None:
            return scalar
    return None


# --- shared


_MAX_TIME_NS = 2**63 - 1  # what a signed 64-bit column holds: the year 2262


def _check_times(record: SpanRecord) -> None:
    for name, value in (("startTimeUnixNano", record.start_ns), ("endTimeUnixNano", record.end_ns)):
        if not 0 <= value <= _MAX_TIME_NS:
            raise BadExport(f"{name} {value} of span {record.span_id} is not a time (0 to {_MAX_TIME_NS} ns)")
    for event in record.events:
        if not 0 <= event["time_ns"] <= _MAX_TIME_NS:
            raise BadExport(f"an event's timeUnixNano {event['time_ns']} of span {record.span_id} is not a time")


def _check_count(count: int, max_spans: int) -> None:
    if count > max_spans:
        raise TooManySpans(f"the export holds {count} spans; at most {max_spans} are taken per request")


def _service_of(resource: dict[str, Any]) -> tuple[str, str]:
    service = resource.get("service.name")
    instance = resource.get("service.instance.id")
    return (str(service) if service else "unknown_service", str(instance) if instance else "")


def iter_attribute_values(record: SpanRecord) -> Iterator[tuple[str, str]]:
    """(key, value as text) of the span's scalar attributes, for search by value."""
    for key, value in record.attributes.items():
        if isinstance(value, str | int | float | bool):
            yield key, str(value)


# --- both encodings: the same message shapes, fields decoded each its own way


@dataclass(frozen=True)
class _FieldDecoding:
    ident: Callable[..., str]  # (value, size in bytes, name, optional=) -> lowercase hex
    attributes: Callable[[Any], dict[str, Any]]
    kind: Callable[[Any], int]
    status_code: Callable[[Any], int]


_PROTOBUF_FIELDS = _FieldDecoding(
    ident=_proto_id, attributes=_proto_attributes, kind=lambda kind: kind, status_code=lambda code: code
)
_JSON_FIELDS = _FieldDecoding(
    ident=_hex_id,
    attributes=_json_attributes,
    kind=lambda kind: _enum(kind, _KIND_NUMBERS, "kind"),
    status_code=lambda code: _enum(code, _STATUS_NUMBERS, "status.code"),
)


def _records(export: Any, fields: _FieldDecoding) -> list[SpanRecord]:
    """The spans of an export (ExportTraceServiceRequest or its JSON mapping) as records."""
    records = []
    for resource_spans in export.resource_spans:
        service, instance = _service_of(fields.attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                records.append(
                    SpanRecord(
                        trace_id=fields.ident(span.trace_id, 16, "traceId"),
                        span_id=fields.ident(span.span_id, 8, "spanId"),
                        parent_span_id=fields.ident(span.parent_span_id, 8, "parentSpanId", optional=True),
                        service=service,
                        instance=instance,
                        name=span.name,
                        kind=KINDS.get(fields.kind(span.kind), "UNSPECIFIED"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=fields.status_code(span.status.code),
                        status_message=span.status.message,
                        attributes=fields.attributes(span.attributes),
                        events=[
                            {"name": e.name, "time_ns": e.time_unix_nano, "attributes": fields.attributes(e.attributes)}
                            for e in span.events
                        ],
                        links=[
                            {
                                "trace_id": fields.ident(link.trace_id, 16, "links.traceId"),
                                "span_id": fields.ident(link.span_id, 8, "links.spanId"),
                                "attributes": fields.attributes(link.attributes),
                            }
                            for link in span.links
                        ],
                    )
                )
    return records
