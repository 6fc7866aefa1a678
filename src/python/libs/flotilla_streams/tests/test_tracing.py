"""Traces across a stream hop: PRODUCER spans on publish, outbox write and relay; CONSUMER spans
linked to the producer's context carried in the envelope; exported to a real OTLP/HTTP receiver."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from litestar import post
from litestar.datastructures import State
from litestar.di import NamedDependency

from flotilla_contracts.events import OrderPlaced
from flotilla_http.context import TraceContext, trace_var
from flotilla_kit.app import create_service_app
from flotilla_kit.db import Database
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing.apps import started
from flotilla_kit.testing.otlp import OtlpReceiver, ReceivedSpan, reset_global_tracer_provider
from flotilla_kit.testing.waiting import eventually
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import ConsumerOptions, HandlerContext, Handlers
from flotilla_streams.outbox import Outbox
from flotilla_streams.publisher import Publisher
from flotilla_streams.schema import create_messaging_tables
from flotilla_streams.tests.events import STREAM, order

FAST = ConsumerOptions(block_ms=50, retry_backoff_ms=10, maintenance_interval_ms=10)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    reset_global_tracer_provider()
    with OtlpReceiver() as running:
        yield running
    reset_global_tracer_provider()


def _app(tmp_path, redis_url: str, endpoint: str, handled: list[tuple[str, TraceContext | None]]):
    outbox = Outbox(source="shop")
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def on_order(event: OrderPlaced, ctx: HandlerContext) -> None:
        handled.append((ctx.envelope.id, trace_var.get()))

    @post("/orders/direct")
    async def publish_directly(state: State) -> str:
        return (await Publisher(state.redis, source="shop").publish(STREAM, order(1))).id

    @post("/orders/outbox")
    async def publish_through_outbox(db: NamedDependency[Database]) -> str:
        async with db.transaction() as session:
            return (await outbox.add(session, STREAM, order(2))).id

    @contextlib.asynccontextmanager
    async def tables(app):
        async with app.state.db.engine.begin() as connection:
            await connection.run_sync(create_messaging_tables)
        yield

    settings = ServiceSettings(
        service_name="shop",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/shop.db",
        redis_url=redis_url,
        otel_exporter_otlp_endpoint=endpoint,
    )
    consumer = ConsumerSpec(group="warehouse", streams=[STREAM], handlers=handlers, options=FAST)
    return create_service_app(
        settings,
        version="1",
        route_handlers=[publish_directly, publish_through_outbox],
        components=[tables, messaging(consumers=[consumer], outbox=outbox)],
    )


def _one(spans: list[ReceivedSpan], **wanted: str) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, key) == value for key, value in wanted.items())]
    assert len(found) == 1, f"{wanted}: {found}"
    return found[0]


async def test_an_event_published_in_a_request_is_handled_in_a_consumer_span_linked_to_its_producer(
    tmp_path, redis_server, client, receiver
):
    handled: list[tuple[str, TraceContext | None]] = []
    async with started(_app(tmp_path, redis_server.url, receiver.endpoint, handled)) as http:
        event_id = (await http.post("/orders/direct")).text

        async def consumed() -> bool:
            return any(handled_id == event_id for handled_id, _ in handled)

        await eventually(consumed, what="the event handled")
    spans = receiver.spans  # the app stopped, and flushed its spans
    request = _one(spans, kind="SERVER", name="POST /orders/direct")
    producer = _one(spans, kind="PRODUCER", name=f"publish {STREAM}")
    assert (producer.trace_id, producer.parent_span_id) == (request.trace_id, request.span_id)
    assert producer.attributes["messaging.system"] == "redis"
    assert producer.attributes["messaging.destination.name"] == STREAM
    assert producer.attributes["messaging.operation"] == "publish"
    assert producer.attributes["messaging.message.id"] == event_id
    consumer = _one(spans, kind="CONSUMER", name=f"process {STREAM}")
    assert consumer.links == [(producer.trace_id, producer.span_id)]
    assert (consumer.trace_id, consumer.parent_span_id) == (producer.trace_id, producer.span_id)
    assert consumer.attributes["messaging.operation"] == "process"
    assert consumer.attributes["messaging.message.id"] == event_id
    assert consumer.attributes["messaging.consumer.group.name"] == "warehouse"
    assert consumer.attributes["messaging.destination.name"] == STREAM
    # The handler ran with the consumer span as its trace context (its logs, its calls).
    [(_, context)] = handled
    assert context is not None and (context.trace_id, context.span_id) == (consumer.trace_id, consumer.span_id)


async def test_an_event_through_the_outbox_links_its_relay_and_its_consumer_to_where_it_was_created(
    tmp_path, redis_server, client, receiver
):
    handled: list[tuple[str, TraceContext | None]] = []
    async with started(_app(tmp_path, redis_server.url, receiver.endpoint, handled)) as http:
        event_id = (await http.post("/orders/outbox")).text

        async def consumed() -> bool:
            return any(handled_id == event_id for handled_id, _ in handled)

        await eventually(consumed, what="the event relayed and handled")
    spans = receiver.spans
    request = _one(spans, kind="SERVER", name="POST /orders/outbox")
    created = _one(spans, kind="PRODUCER", name=f"create {STREAM}")
    assert (created.trace_id, created.parent_span_id) == (request.trace_id, request.span_id)
    assert created.attributes["messaging.operation.type"] == "create"
    assert created.attributes["messaging.message.id"] == event_id
    # The INSERT of the outbox row is a database span inside the create span.
    insert = _one(spans, kind="CLIENT", name="INSERT", parent_span_id=created.span_id)
    assert insert.attributes["db.query.text"].startswith("INSERT INTO flotilla_outbox")
    relay = _one(spans, kind="PRODUCER", name=f"relay {STREAM}")
    assert relay.parent_span_id == "" and (created.trace_id, created.span_id) in relay.links
    assert relay.attributes["messaging.batch.message_count"] == 1
    consumer = _one(spans, kind="CONSUMER", name=f"process {STREAM}")
    assert consumer.links == [(created.trace_id, created.span_id)]
    assert consumer.parent_span_id == created.span_id
