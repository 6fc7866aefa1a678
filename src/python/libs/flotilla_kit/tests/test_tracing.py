"""Traces: settings, nothing installed when off, SERVER/CLIENT/database spans exported over OTLP/HTTP
to a real receiver, across two real service processes."""

from __future__ import annotations

import os
import random
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from litestar import get
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from opentelemetry import trace as otel_trace

from flotilla_http.context import parse_traceparent, trace_var
from flotilla_kit.app import create_service_app
from flotilla_kit.db import Database
from flotilla_kit.middleware import RequestContextMiddleware
from flotilla_kit.settings import ServiceSettings, SettingsError, load_settings
from flotilla_kit.testing.otlp import OtlpReceiver, ReceivedSpan, reset_global_tracer_provider
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.tests import traced_service
from flotilla_kit.tracing import (
    RootSampling,
    _unsampled,
    _unsampled_traceparent,
    sampler_from,
    traces_endpoint,
    tracing_enabled,
)

INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c"
INCOMING_SPAN = "b7ad6b7169203331"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    reset_global_tracer_provider()
    with OtlpReceiver() as running:
        yield running
    reset_global_tracer_provider()


def _settings(tmp_path: Path, **env: str) -> ServiceSettings:
    return load_settings(
        ServiceSettings, {"SERVICE_NAME": "shop", "DATABASE_URL": f"sqlite:///{tmp_path}/shop.db", **env}
    )


# ---------------------------------------------------------------------------- settings


def test_tracing_is_on_with_an_endpoint_and_off_without_one_or_when_disabled():
    assert not tracing_enabled(load_settings(ServiceSettings, {}))
    on = load_settings(ServiceSettings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert tracing_enabled(on)
    assert traces_endpoint(on) == "http://collector:4318/v1/traces"
    disabled = load_settings(
        ServiceSettings, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing_enabled(disabled)
    signal_specific = load_settings(ServiceSettings, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/traces"})
    assert traces_endpoint(signal_specific) == "http://c:4318/traces"


def test_the_sampler_is_read_from_the_standard_variables():
    settings = load_settings(
        ServiceSettings, {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.01"}
    )
    assert "TraceIdRatioBased{0.01}" in sampler_from(settings).get_description()
    assert "AlwaysOnSampler" in sampler_from(load_settings(ServiceSettings, {})).get_description()


@pytest.mark.parametrize(
    "sampler",
    ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
     "parentbased_traceidratio"],
)  # fmt: skip
@pytest.mark.parametrize("ratio", ["0", "0.01", "0.5", "1"])
def test_a_new_trace_is_sampled_before_the_sdk_exactly_as_the_sdk_sampler_decides(sampler, ratio):
    settings = load_settings(ServiceSettings, {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": ratio})
    ours, sdk = RootSampling.from_settings(settings), sampler_from(settings)
    rng = random.Random(f"{sampler}-{ratio}")
    # Random ids, and ids on both sides of the ratio's bound (where an off-by-one would show).
    bound = ours.bound
    edges = [bound - 1, bound, bound + 1, (1 << 64) - 1, 1 << 64, (rng.getrandbits(64) << 64) | max(bound - 1, 0)]
    for trace_id in [rng.getrandbits(128) or 1 for _ in range(2000)] + [e for e in edges if 0 < e < 1 << 128]:
        decided = sdk.should_sample(None, trace_id, "GET").decision.is_sampled()
        assert ours.sampled(trace_id) == decided, hex(trace_id)


def test_the_sampled_flag_read_from_a_traceparent_agrees_with_parsing_it():
    rng = random.Random(7)
    values = [
        f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-{rng.getrandbits(8):02x}" for _ in range(2000)
    ]
    for value in values:
        assert _unsampled_traceparent(value) == _unsampled(parse_traceparent(value)), value
    # Anything not in the exact form producers write goes the parsing way (a malformed one then
    # starts a new trace): the shortcut never says "not sampled" of it.
    trace, span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    malformed = [
        "", "00-abc-00", "x" * 54 + "0", "x" * 56, f"ff-{trace}-{span}-00", f"01-{trace}-{span}-00",
        f"00-{'0' * 32}-{span}-00", f"00-{trace}-{'0' * 16}-00", f"00-{trace}-{span}-z0", f"00-{trace}-{span}-0",
        f"00-{trace.upper()}-{span}-00", f" 00-{trace}-{span}-00", f"00-{trace}-{span}-00\n", f"00_{trace}-{span}-00",
        f"00-{trace[:-1]}g-{span}-00",
    ]  # fmt: skip
    for value in malformed:
        assert not _unsampled_traceparent(value), value


def test_bad_tracing_settings_are_named():
    with pytest.raises(SettingsError) as raised:
        load_settings(
            ServiceSettings,
            {
                "OTEL_TRACES_SAMPLER": "sometimes",
                "OTEL_TRACES_SAMPLER_ARG": "2",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
        )
    text = str(raised.value)
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='grpc'" in text and "http/json" in text
    assert "OTEL_TRACES_SAMPLER='sometimes'" in text and "parentbased_traceidratio" in text
    assert "OTEL_TRACES_SAMPLER_ARG='2'" in text
    assert "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4318'" in text


# ---------------------------------------------------------------------------- in one process


@get("/items/{item_id:int}")
async def _read_item(item_id: int, db: NamedDependency[Database]) -> dict[str, str]:
    await db.fetch_one(sa.select(sa.literal(item_id)))
    trace = trace_var.get()
    assert trace is not None
    return {"trace_id": trace.trace_id, "span_id": trace.span_id}


@get("/boom")
async def _boom() -> None:
    raise RuntimeError("the handler broke")


def _app(settings: ServiceSettings):
    return create_service_app(settings, version="1.2.3", route_handlers=[_read_item, _boom])


async def test_tracing_off_installs_nothing_and_adds_no_span_layer(tmp_path):
    reset_global_tracer_provider()
    app = _app(_settings(tmp_path))
    async with AsyncTestClient(app) as client:
        answer = await client.get("/items/7", headers={"traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"})
        assert answer.status_code == 200
        # The request context works as without tracing: the trace goes on, a new span id each hop.
        assert answer.json()["trace_id"] == INCOMING_TRACE
        assert answer.json()["span_id"] != INCOMING_SPAN
        assert isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)
        handler = app.asgi_handler
        assert isinstance(handler, RequestContextMiddleware) and handler.spans is None
        assert not app.after_exception
        for engine in app.state.db.sync_engines():
            assert not sa.event.contains(engine, "before_cursor_execute", _listener_of(engine))


def _listener_of(engine):
    # Any listener tracing would have added: none is registered at all when off.
    listeners = list(engine.dispatch.before_cursor_execute)
    return listeners[0] if listeners else (lambda *a: None)


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
async def test_a_request_is_a_server_span_continuing_the_callers_trace_with_its_database_spans(
    tmp_path, receiver, protocol
):
    app = _app(_settings(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL=protocol))
    async with AsyncTestClient(app) as client:
        answer = await client.get("/items/7?full=1", headers={"traceparent": f"00-{INCOMING_TRACE}-{INCOMING_SPAN}-01"})
        assert answer.status_code == 200
        ids = answer.json()
        assert (await client.get("/boom")).status_code == 500
    # The app stopped: its shutdown flushed the spans.
    assert receiver.content_types == {"application/json" if protocol == "http/json" else "application/x-protobuf"}
    spans = receiver.spans
    server = _one(spans, kind="SERVER", name="GET /items/{item_id}")
    # trace_var (logs, the HTTP client) holds the span's ids, and the answer names the span too.
    assert (server.trace_id, server.span_id) == (ids["trace_id"], ids["span_id"])
    assert answer.headers["traceparent"].startswith(f"00-{server.trace_id}-{server.span_id}-")
    assert server.trace_id == INCOMING_TRACE and server.parent_span_id == INCOMING_SPAN
    assert server.service == "shop"
    assert server.attributes["http.route"] == "/items/{item_id}"
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == "/items/7" and server.attributes["url.query"] == "full=1"
    statement = _one(spans, kind="CLIENT", parent=server)
    assert statement.name == "SELECT" and statement.attributes["db.system.name"] == "sqlite"
    assert statement.attributes["db.query.text"].startswith("SELECT ?")  # placeholders, never the value 7
    failed = _one(spans, kind="SERVER", name="GET /boom")
    assert failed.status_code == 2 and "exception" in failed.events
    assert failed.attributes["http.response.status_code"] == 500


async def test_sampling_at_zero_exports_nothing(tmp_path, receiver):
    settings = _settings(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0",
    )
    app = _app(settings)
    async with AsyncTestClient(app) as client:
        for item in range(20):
            answer = await client.get(f"/items/{item}")
            assert answer.status_code == 200
            # Traced but not sampled: the context still goes on, flagged so downstream drops it too.
            assert int(answer.headers["traceparent"][-2:], 16) & 1 == 0
        assert (await client.get("/boom")).status_code == 500
    assert receiver.spans == [] and receiver.posts == 0


async def test_a_sampled_new_trace_is_exported_under_the_trace_id_it_was_sampled_by(tmp_path, receiver):
    settings = _settings(
        tmp_path,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.5",
    )
    roots = RootSampling.from_settings(settings)
    app = _app(settings)
    answered: dict[str, bool] = {}
    async with AsyncTestClient(app) as client:
        for item in range(60):
            answer = await client.get(f"/items/{item}")
            assert answer.status_code == 200
            trace = parse_traceparent(answer.headers["traceparent"])
            assert trace is not None
            sampled = bool(int(trace.flags, 16) & 1)
            # The flag the answer carries is the sampler's verdict on the trace id it carries.
            assert sampled == roots.sampled(int(trace.trace_id, 16))
            answered[trace.trace_id] = sampled
    assert 0 < sum(answered.values()) < len(answered)  # both kinds, at 0.5 over 60 requests
    exported = {span.trace_id for span in receiver.spans if span.kind == "SERVER"}
    assert exported == {trace_id for trace_id, sampled in answered.items() if sampled}


def _one(spans: list[ReceivedSpan], *, kind: str, name: str | None = None, parent: ReceivedSpan | None = None):
    found = [
        s
        for s in spans
        if s.kind == kind
        and (name is None or s.name == name)
        and (parent is None or (s.parent_span_id == parent.span_id and s.trace_id == parent.trace_id))
    ]
    assert len(found) == 1, f"{kind} {name} under {parent and parent.name}: {found}"
    return found[0]


# ---------------------------------------------------------------------------- two processes


def _serve(name: str, tmp_path: Path, receiver: OtlpReceiver, **env: str) -> ServiceProcess:
    port = free_port()
    settings = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SERVICE_NAME": name,
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{tmp_path}/{name}.db",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        **env,
    }
    command = [sys.executable, "-m", traced_service.__name__, "serve", "--port", str(port)]
    process = ServiceProcess(command, port=port, env=settings)
    try:
        process.wait_ready(timeout=60)
    except BaseException:
        _end(process)
        raise
    return process


def _end(process: ServiceProcess) -> None:
    process.stop()
    try:
        os.killpg(process.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_a_request_through_two_services_is_one_trace_server_client_server(tmp_path, receiver):
    back = _serve("back", tmp_path, receiver)
    try:
        front = _serve("front", tmp_path, receiver, DISCOVERY="static", SERVICE_URLS=f"back={back.base_url}")
        try:
            with urllib.request.urlopen(front.base_url + "/relay/42", timeout=20) as answer:
                assert answer.status == 200
                front_context = answer.headers["traceparent"]
        finally:
            _end(front)
    finally:
        _end(back)  # stopping flushes: every span is exported by now
    trace_id = front_context.split("-")[1]
    spans = [s for s in receiver.spans if s.trace_id == trace_id]
    front_server = _one(spans, kind="SERVER", name="GET /relay/{item_id}")
    assert front_server.service == "front" and front_server.parent_span_id == ""
    call = _one(spans, kind="CLIENT", parent=front_server)
    assert call.service == "front" and call.name == "GET"
    assert call.attributes["peer.service"] == "back" and call.attributes["http.response.status_code"] == 200
    assert call.attributes["url.full"] == back.base_url + "/items/42"
    back_server = _one(spans, kind="SERVER", parent=call)
    assert back_server.service == "back" and back_server.name == "GET /items/{item_id}"
    statement = _one(spans, kind="CLIENT", parent=back_server)  # read in the SQLite read thread
    assert statement.service == "back" and statement.attributes["db.operation.name"] == "SELECT"
    assert len(spans) == 4
