"""Messaging inside a flotilla_kit service: readiness, metrics, the outbox from a handler, the dlq CLI."""

import argparse
import asyncio
import dataclasses
import sys
import uuid
from types import SimpleNamespace

import pytest
from litestar import post
from litestar.di import NamedDependency
from litestar.testing import TestClient

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import OrderPlaced, ProductCreated
from flotilla_kit.app import create_service_app
from flotilla_kit.db import Database
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.factory import create_redis
from flotilla_streams import component as component_module
from flotilla_streams.cli import dlq_command
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import ConsumerOptions, HandlerContext, Handlers
from flotilla_streams.dlq import list_entries
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from flotilla_streams.outbox import Outbox, OutboxRelay
from flotilla_streams.publisher import Publisher
from flotilla_streams.retention import RetentionPolicy
from flotilla_streams.schema import create_messaging_tables
from flotilla_streams.tests.events import STREAM, order
from prometheus_client import CollectorRegistry

PRODUCTS = "catalog.events"


SHOP_OPTIONS = ConsumerOptions(block_ms=50, retry_backoff_ms=10, max_deliveries=2, maintenance_interval_ms=10)


def _app(tmp_path, redis_url: str, options: ConsumerOptions = SHOP_OPTIONS, **overrides):
    outbox = Outbox(source="shop")
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def on_order(event: OrderPlaced, ctx: HandlerContext) -> None:
        if event.customer_id == "poison":
            raise ValueError("cannot serve this customer")
        await ctx.publish(PRODUCTS, _product("FOLLOW-" + event.customer_id))

    @post("/products")
    async def create(db: NamedDependency[Database]) -> None:
        async with db.transaction() as session:
            await outbox.add(session, PRODUCTS, _product("API"))

    async def migrate_tables(app) -> None:
        async with app.state.db.engine.begin() as connection:
            await connection.run_sync(create_messaging_tables)

    settings = ServiceSettings(
        service_name="shop", database_url=f"sqlite+aiosqlite:///{tmp_path}/shop.db", redis_url=redis_url, **overrides
    )
    spec = ConsumerSpec(
        group="shop",
        streams=[STREAM],
        handlers=handlers,
        options=options,
    )
    return create_service_app(
        settings,
        version="1",
        route_handlers=[create],
        components=[_setup(migrate_tables), messaging(consumers=[spec], outbox=outbox, stats_interval_seconds=0.05)],
    )


def _setup(job):
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def component(app):
        await job(app)
        yield

    return component


def _product(sku: str) -> ProductCreated:
    return ProductCreated(product_id=uuid.uuid4(), sku=sku, name="n", price=Money(1, "EUR"), active=True, version=1)


async def test_a_service_consumes_publishes_through_its_outbox_and_reports_it(tmp_path, redis_server, client):
    app = _app(tmp_path, redis_server.url)
    with TestClient(app) as http:
        await eventually(lambda: _ready(http), what="ready")
        assert http.get("/readyz").json()["checks"] == {
            "database": "ok",
            "redis": "ok",
            "consumer shop": "ok",
            "outbox relay": "ok",
        }
        assert http.post("/products").status_code == 201
        placed = await Publisher(client, source="orders").publish(STREAM, order(1))
        await Publisher(client, source="orders").publish(STREAM, msgspec_replace_customer(order(2), "poison"))
        await eventually(lambda: _length(client, PRODUCTS, 2), what="API event and follow-up relayed")
        await eventually(lambda: _dlq(client, 1), what="poison dead-lettered")
        events = [decode(fields[ENVELOPE_FIELD]) for _, fields in await client.xrange(PRODUCTS)]
        follow_up = next(e for e in events if e.causation_id)
        assert follow_up.causation_id == placed.id and follow_up.correlation_id == placed.correlation_id
        dlq_gauge = 'flotilla_stream_dlq_length{group="shop",stream="orders.events"} 1.0'
        await eventually(lambda: _has(http, dlq_gauge), what="stream gauges refreshed")
        metrics = http.get("/metrics").text
    assert 'flotilla_stream_acked_total{group="shop",stream="orders.events"}' in metrics
    assert 'flotilla_stream_dead_lettered_total{group="shop",stream="orders.events"} 1.0' in metrics
    assert "flotilla_outbox_relayed_total 2.0" in metrics


def msgspec_replace_customer(event: OrderPlaced, customer: str) -> OrderPlaced:
    import msgspec

    return msgspec.structs.replace(event, customer_id=customer)


async def _ready(http) -> bool:
    return http.get("/readyz").status_code == 200


async def _has(http, text) -> bool:
    return text in http.get("/metrics").text


async def _length(client, stream, n) -> bool:
    return await client.xlen(stream) == n


async def _dlq(client, n) -> bool:
    return len(await list_entries(client, STREAM)) == n


async def test_a_consumer_that_dies_on_an_unexpected_redis_error_is_not_ready_restarts_and_recovers(
    tmp_path, redis_server, client
):
    options = dataclasses.replace(SHOP_OPTIONS, restart_backoff_ms=10, max_restart_backoff_ms=50)
    app = _app(tmp_path, redis_server.url, options)
    with TestClient(app) as http:
        await eventually(lambda: _ready(http), what="ready")
        # A real server state that no consumer expects: its stream is now a string, so every
        # stream command it sends fails with WRONGTYPE (not NOGROUP, not a connection error).
        await client.delete(STREAM)
        await client.set(STREAM, "not a stream")
        await eventually(lambda: _consumer_not_ready(http), what="readiness failing while the consumer is down")
        restarts = 'flotilla_stream_consumer_restarts_total{group="shop"}'
        await eventually(lambda: _counted_at_least(http, restarts, 2), what="restarts counted, with backoff")
        assert http.get("/healthz").status_code == 200  # alive all along: only readiness says it is down

        await client.delete(STREAM)
        await eventually(lambda: _ready(http), what="ready again once the consumer runs")
        await Publisher(client, source="orders").publish(STREAM, order(7))
        await eventually(lambda: _length(client, PRODUCTS, 1), what="an event handled after the restart")


async def _consumer_not_ready(http) -> bool:
    answer = http.get("/readyz")
    return answer.status_code == 503 and "consumer shop: failed" in answer.json()["detail"]


async def _counted_at_least(http, sample: str, n: float) -> bool:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1]) >= n
    return False


async def test_an_outbox_relay_stopped_by_an_unexpected_error_is_not_ready_restarts_and_recovers(
    tmp_path, redis_server, client, monkeypatch
):
    app = _app(tmp_path, redis_server.url)
    relay_once = OutboxRelay.relay_once
    bug = {"present": True}

    async def relay_once_with_a_bug(self):
        # Not a Redis, database or OS error: nothing in the relay expects it.
        if bug["present"]:
            raise ValueError("a bug in the relay")
        return await relay_once(self)

    with TestClient(app) as http:
        await eventually(lambda: _ready(http), what="ready")
        monkeypatch.setattr(OutboxRelay, "relay_once", relay_once_with_a_bug)
        assert http.post("/products").status_code == 201  # its commit wakes the relay
        await eventually(
            lambda: _not_ready_because(http, "outbox relay: failed", "ValueError: a bug in the relay"),
            what="readiness failing while the relay is down",
        )
        restarts = "flotilla_outbox_relay_restarts_total"
        await eventually(lambda: _counted_at_least(http, restarts, 2), what="restarts counted, with backoff")
        assert http.get("/healthz").status_code == 200

        bug["present"] = False
        await eventually(lambda: _ready(http), what="ready again once the relay runs")
        await eventually(lambda: _length(client, PRODUCTS, 1), what="the event relayed after the restart")


async def test_an_outbox_relay_that_cannot_write_to_redis_is_not_ready_until_it_relays_again(
    tmp_path, redis_server, client
):
    app = _app(tmp_path, redis_server.url)
    with TestClient(app) as http:
        await eventually(lambda: _ready(http), what="ready")
        # Redis answers pings, but every batch for this stream fails (WRONGTYPE): nothing is relayed.
        await client.set(PRODUCTS, "not a stream")
        assert http.post("/products").status_code == 201
        await eventually(
            lambda: _not_ready_because(http, "outbox relay: failed", "WRONGTYPE"),
            what="readiness failing while the relay cannot relay",
        )
        assert "redis: failed" not in http.get("/readyz").json()["detail"]

        await client.delete(PRODUCTS)
        await eventually(lambda: _ready(http), what="ready again once the relay relays")
        await eventually(lambda: _length(client, PRODUCTS, 1), what="the event relayed after all")


async def _not_ready_because(http, *parts: str) -> bool:
    answer = http.get("/readyz")
    return answer.status_code == 503 and all(part in answer.json()["detail"] for part in parts)


async def test_discovery_and_messaging_of_a_service_share_one_redis_pool(tmp_path):
    server = start_redis()  # its own: every connection to it is the service's or this test's
    observer = create_redis(server.url)
    try:
        app = _app(tmp_path, server.url, discovery="redis", instance_id="shop-1", public_url="http://127.0.0.1:1")
        with TestClient(app) as http:
            await eventually(lambda: _ready(http), what="ready")
            # Registration, the resolver's subscription, the consumer's reads: all in one pool.
            await eventually(lambda: _all_in_one_pool(observer, app.state.redis), what="one pool for everything")
    finally:
        await observer.aclose()
        server.close()


async def _all_in_one_pool(observer, shared) -> bool:
    own = str(await observer.client_id())
    connections = [c for c in await observer.client_list() if str(c["id"]) != own]
    pool = shared.connection_pool
    # redis-py has no public count of a pool's open connections in every version we allow.
    in_pool = len(pool._available_connections) + len(pool._in_use_connections)
    return len(connections) == in_pool


def test_readiness_fails_while_redis_is_unreachable(tmp_path):
    app = _app(tmp_path, "redis://127.0.0.1:1/0")
    with TestClient(app) as http:
        problem = http.get("/readyz").json()
    assert problem["status"] == 503
    assert "redis: failed" in problem["detail"]


def test_a_service_without_redis_url_does_not_start(tmp_path, caplog):
    app = _app(tmp_path, "")
    with pytest.raises(BaseException):  # noqa: B017 - the server's exception group; the log says why
        with TestClient(app):
            pass
    assert "REDIS_URL: this service publishes or consumes events and needs Redis" in caplog.text


async def test_the_dlq_command_lists_shows_and_replays(client, redis_server, capsys):
    await client.xadd(STREAM, {b"junk": b"1"})
    await client.xgroup_create(STREAM, "g", id="0")
    await client.xreadgroup("g", "c", {STREAM: ">"})
    from flotilla_streams.dlq import DeadLetter, dead_letter

    entry_id = (await client.xrange(STREAM))[0][0]
    await dead_letter(client, STREAM, "g", "c", [DeadLetter(entry_id, {b"junk": b"1"}, "undecodable: no envelope", 1)])
    settings = ServiceSettings(redis_url=redis_url_of(redis_server))

    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser()
        dlq_command.configure(parser)
        return await_in_thread(dlq_command.run, parser.parse_args(argv), settings)

    assert await run("list", STREAM) == 0
    dlq_id = (await list_entries(client, STREAM))[0].id
    assert dlq_id in capsys.readouterr().out
    assert await run("show", STREAM, dlq_id) == 0
    assert "undecodable: no envelope" in capsys.readouterr().out
    assert await run("show", STREAM, "1-1") == 1
    assert await run("replay", STREAM, dlq_id, "9-9") == 1  # one replayed, one not found
    assert await list_entries(client, STREAM) == []
    assert await client.xlen(STREAM) == 2


def redis_url_of(server) -> str:
    return server.url


def await_in_thread(fn, *args):
    # The command runs its own event loop (asyncio.run), as it does in a PEX; keep it off ours.
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def test_leaving_the_component_ends_its_background_tasks_before_the_kit_closes_the_client(redis_server, client):
    """Stats and retention run beside the consumers; the shared client is closed right after the component."""
    state = SimpleNamespace(
        settings=SimpleNamespace(redis_url=redis_server.url),
        redis=client,
        metrics=SimpleNamespace(registry=CollectorRegistry()),
        readiness_checks={},
    )
    component = messaging(retention={STREAM: RetentionPolicy(max_length=100)}, stats_interval_seconds=0.01)
    before = asyncio.all_tasks()
    async with component(SimpleNamespace(state=state)):
        started = asyncio.all_tasks() - before
        assert len(started) == 2
    assert all(task.done() for task in started)


async def test_the_streams_a_service_publishes_are_trimmed_to_its_retention(redis_server, client):
    state = SimpleNamespace(
        settings=SimpleNamespace(redis_url=redis_server.url, stream_retention_hours=1.0),
        redis=client,
        metrics=SimpleNamespace(registry=CollectorRegistry()),
        readiness_checks={},
    )
    for ms in range(1, 301):  # entries from 1970, far older than an hour: three whole stream nodes
        await client.xadd(PRODUCTS, {"envelope": b"{}"}, id=f"{ms}-1")
    recent = await client.xadd(PRODUCTS, {"envelope": b"{}"})
    component = messaging(publishes=[PRODUCTS], retention_interval_seconds=0.01, stats_interval_seconds=60)
    async with component(SimpleNamespace(state=state)):
        # Trimmed by whole nodes (XTRIM MINID ~, cheap), so at most a node's worth of old ones stays.
        await eventually(lambda: _at_most(client, PRODUCTS, 101), what="the old entries trimmed")
    assert (await client.xrange(PRODUCTS, min=recent, max=recent))[0][0] == recent


async def _at_most(client, stream, n) -> bool:
    return await client.xlen(stream) <= n


async def test_leaving_the_component_ends_a_background_job_that_lost_its_cancellation(
    redis_server, client, monkeypatch
):
    """redis-py writes a command inside asyncio.wait_for; on Python 3.11 a cancellation that arrives
    just as the write completes is dropped and the command goes on (CPython gh-86296). A stats or
    retention loop that lost its cancellation so once kept the app's shutdown waiting for ever."""
    written = asyncio.Event()
    lost: list[bool] = []

    async def write() -> None:
        # Wakes the test before wait_for's own waiter is released: the test leaves the component,
        # cancelling the job exactly between the write's completion and wait_for's return.
        written.set()

    async def trim_sending_like_redis_py(_client, _stream, _policy) -> int:
        await asyncio.wait_for(write(), 10)
        task = asyncio.current_task()
        assert task is not None
        lost.append(task.cancelling() > 0)  # cancelled, yet still running
        return 0

    monkeypatch.setattr(component_module, "trim", trim_sending_like_redis_py)
    state = SimpleNamespace(
        settings=SimpleNamespace(redis_url=redis_server.url),
        redis=client,
        metrics=SimpleNamespace(registry=CollectorRegistry()),
        readiness_checks={},
    )
    component = messaging(retention={STREAM: RetentionPolicy(max_length=100)}, retention_interval_seconds=0.01)
    before = asyncio.all_tasks()
    async with asyncio.timeout(30):  # a guard: without the fix, leaving the component never returns
        async with component(SimpleNamespace(state=state)):
            started = asyncio.all_tasks() - before
            await written.wait()
    assert all(task.done() for task in started)
    if sys.version_info < (3, 12):  # the race is Python 3.11's: make sure this test provoked it
        assert lost == [True]
