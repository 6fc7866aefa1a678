"""OTLP/HTTP ingestion: protobuf and JSON, gzip, bad bodies refused with 400, the store's bound, and the
trace search and waterfall over what went in."""

import gzip
import json
import os

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
T0 = 1_700_000_000_000_000_000


def new_id(size: int) -> bytes:
    return os.urandom(size)


def proto_span(trace_id: bytes, name: str, *, parent: bytes = b"", start_ms: float = 0, ms: float = 1, **extra):
    span = Span(
        trace_id=trace_id,
        span_id=extra.pop("span_id", None) or new_id(8),
        parent_span_id=parent,
        name=name,
        kind=extra.pop("kind", Span.SPAN_KIND_SERVER),
        start_time_unix_nano=T0 + int(start_ms * 1e6),
        end_time_unix_nano=T0 + int((start_ms + ms) * 1e6),
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in extra.pop("attributes", {}).items()],
        status=Status(code=extra.pop("status", 0)),
    )
    for trace, span_id in extra.pop("links", []):
        span.links.add(trace_id=trace, span_id=span_id)
    return span


def far_future_span() -> Span:
    span = proto_span(new_id(16), "far future")
    span.end_time_unix_nano = 2**64 - 1  # fixed64 holds it; no time column does
    return span


def proto_export(service: str, *spans: Span) -> bytes:
    resource = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))])
    export = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    return export.SerializeToString()


def json_export(service: str, *spans: dict) -> bytes:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": list(spans)}],
                }
            ]
        }
    ).encode()


def json_span(trace_id: str, span_id: str, name: str, **extra) -> dict:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(T0),  # 64-bit integers come as strings in OTLP JSON
        "endTimeUnixNano": str(T0 + 5_000_000),
        **extra,
    }


def test_a_protobuf_export_is_stored_and_answered_in_protobuf(client):
    trace_id = new_id(16)
    root = proto_span(trace_id, "GET /products", ms=10, attributes={"http.route": "/products"})
    child = proto_span(trace_id, "SELECT products", parent=root.span_id, start_ms=2, ms=3, kind=Span.SPAN_KIND_CLIENT)
    response = client.post("/v1/traces", content=proto_export("catalog", root, child), headers=PROTOBUF)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-protobuf"
    ExportTraceServiceResponse.FromString(response.content)  # a valid answer to the exporter

    found = client.get("/api/traces", params={"service": "catalog"}).json()["items"]
    assert [(t["trace_id"], t["root_name"], t["span_count"]) for t in found] == [(trace_id.hex(), "GET /products", 2)]
    trace = client.get(f"/api/traces/{trace_id.hex()}").json()
    assert [(s["name"], s["parent_span_id"], s["kind"]) for s in trace["spans"]] == [
        ("GET /products", "", "SERVER"),
        ("SELECT products", root.span_id.hex(), "CLIENT"),
    ]
    assert trace["spans"][1]["offset_ms"] == 2.0 and trace["spans"][1]["duration_ms"] == 3.0
    assert trace["spans"][0]["attributes"] == {"http.route": "/products"}


def test_a_json_export_with_hex_ids_and_enum_numbers_is_stored(client):
    trace_id, span_id = new_id(16).hex(), new_id(8).hex()
    span = json_span(
        trace_id,
        span_id,
        "process orders.events",
        kind=5,
        status={"code": 2, "message": "boom"},
        attributes=[
            {"key": "messaging.message.conversation_id", "value": {"stringValue": "order-42"}},
            {"key": "messaging.message.delivery_count", "value": {"intValue": "3"}},
        ],
        links=[{"traceId": trace_id, "spanId": new_id(8).hex()}],
    )
    response = client.post("/v1/traces", content=json_export("payments", span), headers=JSON)
    assert (response.status_code, response.json()) == (200, {})

    stored = client.get(f"/api/traces/{trace_id}").json()["spans"][0]
    assert (stored["kind"], stored["status"], stored["status_message"]) == ("CONSUMER", "error", "boom")
    assert stored["attributes"]["messaging.message.delivery_count"] == 3
    assert stored["duration_ms"] == 5.0 and len(stored["links"]) == 1
    by_value = client.get("/api/traces", params={"value": "order-42"}).json()["items"]
    assert [t["trace_id"] for t in by_value] == [trace_id]
    assert [t["trace_id"] for t in client.get("/api/traces", params={"status": "error"}).json()["items"]] == [trace_id]


def test_gzip_bodies_of_both_encodings_are_inflated(client):
    trace_id = new_id(16)
    protobuf = gzip.compress(proto_export("orders", proto_span(trace_id, "POST /orders")))
    assert (
        client.post("/v1/traces", content=protobuf, headers={**PROTOBUF, "content-encoding": "gzip"}).status_code == 200
    )
    json_trace = new_id(16).hex()
    body = gzip.compress(json_export("orders", json_span(json_trace, new_id(8).hex(), "GET /orders")))
    assert client.post("/v1/traces", content=body, headers={**JSON, "content-encoding": "gzip"}).status_code == 200
    stored = {t["trace_id"] for t in client.get("/api/traces", params={"service": "orders"}).json()["items"]}
    assert stored == {trace_id.hex(), json_trace}


def test_bad_bodies_are_refused_with_a_problem_naming_what_is_wrong(client):
    good_trace = new_id(16).hex()
    cases = [
        (b"\xff\xff\xff", PROTOBUF, "protobuf"),
        (b"{not json", JSON, "not an OTLP export in JSON"),
        (json_export("x", json_span("xyz", new_id(8).hex(), "a")), JSON, "traceId must be 32 hex digits"),
        (json_export("x", json_span("00" * 16, new_id(8).hex(), "a")), JSON, "not all zero"),
        (json_export("x", json_span(good_trace, "abc", "a")), JSON, "spanId must be 16 hex digits"),
        (json_export("x", json_span(good_trace, new_id(8).hex(), "a", kind="SPAN_KIND_WHATEVER")), JSON, "kind"),
        (proto_export("x", proto_span(new_id(4), "short trace id")), PROTOBUF, "traceId must be 16 bytes"),
        (b"not gzip", {**JSON, "content-encoding": "gzip"}, "declared gzip but is not"),
        (json_export("x", json_span(good_trace, new_id(8).hex(), "a", startTimeUnixNano="-5")), JSON, "not a time"),
        (proto_export("x", far_future_span()), PROTOBUF, "not a time"),
    ]
    for body, headers, says in cases:
        response = client.post("/v1/traces", content=body, headers=headers)
        assert response.status_code == 400, (says, response.text)
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert says in problem["detail"], (says, problem)
    assert client.get("/api/traces").json()["items"] == []  # nothing of a refused export is stored


def test_other_media_types_and_encodings_are_unsupported(client):
    assert client.post("/v1/traces", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    headers = {**JSON, "content-encoding": "br"}
    assert client.post("/v1/traces", content=b"{}", headers=headers).status_code == 415


def test_an_export_over_the_span_limit_is_refused_whole(client, settings):
    trace_id = new_id(16)
    spans = [proto_span(trace_id, f"s{i}") for i in range(settings.console_max_spans_per_request + 1)]
    response = client.post("/v1/traces", content=proto_export("catalog", *spans), headers=PROTOBUF)
    assert response.status_code == 400
    assert f"at most {settings.console_max_spans_per_request}" in response.json()["detail"]
    assert client.get("/api/traces").json()["items"] == []


def test_a_gzip_body_inflating_past_the_limit_is_refused(tmp_path, redis_server):
    from console.app import create_app
    from console.tests.conftest import console_settings
    from litestar.testing import TestClient

    settings = console_settings(tmp_path, redis_server, console_max_inflated_bytes=10_000)
    bomb = gzip.compress(b"\0" * 1_000_000)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 400 and "inflates past 10000 bytes" in response.json()["detail"]


def test_a_body_over_the_size_limit_is_refused(tmp_path, redis_server):
    from console.app import create_app
    from console.tests.conftest import console_settings
    from litestar.testing import TestClient

    settings = console_settings(tmp_path, redis_server, max_request_body_bytes=1000)
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/traces", content=b"\0" * 5000, headers=PROTOBUF)
    assert response.status_code == 413


def test_past_the_bound_the_oldest_traces_are_dropped_whole(client, settings):
    # max 50 spans: ten traces of ten spans each (sent in two exports each) leave the newest five.
    trace_ids = []
    for n in range(10):
        trace_id = new_id(16)
        trace_ids.append(trace_id.hex())
        root = proto_span(trace_id, f"root {n}", ms=20)
        first = [root, *(proto_span(trace_id, f"child {i}", parent=root.span_id) for i in range(4))]
        second = [proto_span(trace_id, f"late {i}", parent=root.span_id) for i in range(5)]
        for spans in (first, second):
            assert (
                client.post("/v1/traces", content=proto_export("catalog", *spans), headers=PROTOBUF).status_code == 200
            )
    kept = {t["trace_id"] for t in client.get("/api/traces", params={"limit": 100}).json()["items"]}
    assert kept == set(trace_ids[5:])
    assert client.get(f"/api/traces/{trace_ids[0]}").status_code == 404
    assert all(t["span_count"] == 10 for t in client.get("/api/traces").json()["items"])


def test_a_span_sent_twice_is_stored_once(client):
    trace_id = new_id(16)
    body = proto_export("catalog", proto_span(trace_id, "GET /products"))
    for _ in range(2):  # an exporter retrying after a lost answer
        assert client.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    assert client.get(f"/api/traces/{trace_id.hex()}").json()["trace"]["span_count"] == 1


def test_traces_are_found_by_service_operation_and_duration_of_one_span(client):
    slow, fast = new_id(16), new_id(16)
    client.post(
        "/v1/traces",
        content=proto_export("orders", proto_span(slow, "POST /orders", ms=900), proto_span(fast, "GET /orders", ms=2)),
        headers=PROTOBUF,
    )

    def found(**params):
        return {t["trace_id"] for t in client.get("/api/traces", params=params).json()["items"]}

    assert found(service="orders") == {slow.hex(), fast.hex()}
    assert found(operation="post") == {slow.hex()}
    assert found(min_duration_ms=500) == {slow.hex()}
    assert found(service="orders", operation="GET", min_duration_ms=500) == set()
    assert found(service="catalog") == set()
    assert client.get("/api/traces", params={"status": "maybe"}).status_code == 400


def test_attributes_named_as_secrets_are_stored_masked_and_not_searchable(client):
    trace_id = new_id(16).hex()
    attributes = [
        {"key": "http.request.header.authorization", "value": {"stringValue": "Bearer s3cret"}},
        {"key": "order.id", "value": {"stringValue": "order-9"}},
    ]
    span = json_span(trace_id, new_id(8).hex(), "GET /orders", attributes=attributes)
    assert client.post("/v1/traces", content=json_export("orders", span), headers=JSON).status_code == 200
    stored = client.get(f"/api/traces/{trace_id}").json()["spans"][0]["attributes"]
    assert stored == {"http.request.header.authorization": "***", "order.id": "order-9"}
    assert client.get("/api/traces", params={"value": "Bearer s3cret"}).json()["items"] == []
    assert len(client.get("/api/traces", params={"value": "order-9"}).json()["items"]) == 1
