"""The Node.js loyalty service as a real process: it consumes OrderConfirmed from orders.events in its
own consumer group, validates each event against the published AsyncAPI document, and keeps one point
per whole currency unit per customer, exactly once per event, across kills and restarts.

Orders go through the gateway to the Python services (stack.runner); other tests write hand-built
events to a Redis of their own, as a newer producer or a broken one would. Without `node` or the
service's installed packages (`npm ci` in src/js/services/loyalty) the tests are skipped, and fail
in CI (CI=true), where both must be present.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from e2e.shop import new_product
from faults.flow import OrderFlow, final_states
from stack.node import NodeService, NodeUnavailable, find_service
from stack.runner import Platform, running_platform

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import ORDERS_EVENTS, OrderConfirmed
from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import RedisServer, start_redis
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.envelope import ENVELOPE_FIELD, decode, encode, wrap
from flotilla_streams.publisher import Publisher
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

GROUP = "loyalty"
DLQ = ORDERS_EVENTS + ".dlq"
PROCESSED = "flotilla:loyalty:processed"


class OrderConfirmedWithBonus(OrderConfirmed, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
    """OrderConfirmed as a newer producer sends it: an added optional field, and the version raised."""

    schema_version: ClassVar[int] = 2
    bonus_campaign: str = ""


@pytest.fixture(scope="module")
def loyalty() -> NodeService:
    try:
        return find_service()
    except NodeUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Node.js loyalty service cannot run in CI: {exc}")
        pytest.skip(f"the Node.js loyalty service cannot run here: {exc}")


@contextlib.contextmanager
def running_loyalty(service: NodeService, redis_url: str, instance: str, **env: str) -> Iterator[ServiceProcess]:
    """``node main.js`` on a free port, registered in discovery, ready; stopped (SIGTERM) on leaving."""
    port = free_port()
    settings = {
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "INSTANCE_ID": instance,
        "DISCOVERY": "redis",
        "DISCOVERY_TTL_SECONDS": "5",
        "LOG_LEVEL": "WARNING",
        **env,
    }
    process = ServiceProcess(service.command, port=port, env=settings)
    try:
        process.wait_ready(timeout=30)
        yield process
    finally:
        process.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.process.pid, signal.SIGKILL)


def points(process: ServiceProcess, customer: str) -> int:
    """The customer's points, asked as that customer (the gateway sets x-caller-id from their token)."""
    response = httpx.get(f"{process.base_url}/points/{customer}", headers={"x-caller-id": customer}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["customer_id"] == customer
    value: int = response.json()["points"]
    return value


def metric(process: ServiceProcess, name: str) -> float:
    text = httpx.get(f"{process.base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("group", GROUP) == GROUP:
                return float(sample.value)
    return 0.0


def group_backlog(client: redis.Redis) -> tuple[int, int]:
    """(pending, undelivered) of the loyalty group: (0, 0) once every entry is handled and acked."""
    for group in client.xinfo_groups(ORDERS_EVENTS):
        if group["name"].decode() == GROUP:
            undelivered = len(client.xrange(ORDERS_EVENTS, min="(" + group["last-delivered-id"].decode(), max="+"))
            return int(group["pending"]), undelivered
    return -1, -1


def loyalty_dead_letters(client: redis.Redis) -> list[dict[str, str]]:
    """The loyalty group's entries in orders.events.dlq (other groups dead-letter there too)."""
    letters = [
        {key.decode(): value.decode(errors="replace") for key, value in fields.items()}
        for _, fields in client.xrange(DLQ)
    ]
    return [letter for letter in letters if letter["dlq_group"] == GROUP]


def confirmed(customer: str, amount: int, currency: str = "EUR") -> OrderConfirmed:
    return OrderConfirmed(order_id=uuid.uuid4(), customer_id=customer, total=Money(amount=amount, currency=currency))


def publish(redis_url: str, *events: OrderConfirmed) -> list[str]:
    """Publish with flotilla_streams' publisher, as the orders service does; returns the event ids."""

    async def run() -> list[str]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            publisher = Publisher(client, source="orders")
            return [(await publisher.publish(ORDERS_EVENTS, event)).id for event in events]
        finally:
            await client.aclose()

    return asyncio.run(run())


def payload(**changes: Any) -> dict[str, Any]:
    """An OrderConfirmed payload as JSON, with ``changes``."""
    order = {"type": "orders.OrderConfirmed", "order_id": str(uuid.uuid4()), "customer_id": "x"}
    return {**order, "total": {"amount": 100, "currency": "EUR"}, **changes}


def raw_entry(payload: dict[str, Any], *, version: int = 1) -> bytes:
    """An envelope as the publisher writes it, around a hand-built payload."""
    envelope = json.loads(encode(wrap(confirmed("nobody", 100), source="orders")))
    envelope.update(payload=payload, version=version)
    return json.dumps(envelope).encode()


# --- through the gateway, with the platform's Python services


@pytest.fixture(scope="module")
def platform(tmp_path_factory, loyalty) -> Iterator[Platform]:
    services = ("catalog", "inventory", "orders", "payments")  # what confirms an order
    with running_platform(tmp_path_factory.mktemp("loyalty"), services=services) as platform:
        yield platform


def test_orders_confirmed_through_the_gateway_earn_points_once_each_across_a_kill_and_a_restart(platform, loyalty):
    with platform.client("admin", sub="admin-1") as admin:
        product = new_product(admin, price=1250, stock=10_000)
        client = platform.redis()
        with running_loyalty(loyalty, platform.redis_server.url, "loyalty-1") as first:
            with OrderFlow(platform, product) as flow:
                flow.wait_accepted(10)
                eventually_sync(
                    lambda: metric(first, "flotilla_stream_handled_total") >= 3,
                    timeout=60,
                    what="loyalty-1 adding points for confirmed orders",
                )
                first.stop(signal.SIGKILL)  # mid-stream: orders keep being confirmed
                flow.wait_accepted(len(flow.accepted) + 10)
                # Another instance: it takes over what loyalty-1 left pending, and goes on.
                with running_loyalty(
                    loyalty, platform.redis_server.url, "loyalty-2", STREAM_CLAIM_IDLE_SECONDS="1"
                ) as second:
                    flow.wait_accepted(len(flow.accepted) + 10)
                    flow.stop()
                    orders = final_states(admin, flow.accepted[:])
                    confirmed_orders = [o for o in orders.values() if o["status"] == "confirmed"]
                    assert len(confirmed_orders) == len(orders), flow.summary()
                    customer = confirmed_orders[0]["customer_id"]
                    expected = sum(o["total"]["amount"] // 100 for o in confirmed_orders)
                    eventually_sync(
                        lambda: group_backlog(client) == (0, 0) and points(second, customer) >= expected,
                        timeout=60,
                        what=f"the loyalty group drained and {expected} points for {customer}",
                    )
                    assert points(second, customer) == expected == 12 * len(confirmed_orders)
        # Each order's OrderConfirmed was applied (its id recorded with its points, in one script),
        # and the points equal the sum: so none was applied twice.
        event_ids = {
            envelope.id
            for envelope in (decode(fields[ENVELOPE_FIELD]) for _, fields in client.xrange(ORDERS_EVENTS))
            if envelope.type == "orders.OrderConfirmed"
            and json.loads(bytes(envelope.payload))["order_id"] in {o["id"] for o in confirmed_orders}
        }
        assert len(event_ids) == len(confirmed_orders)
        assert all(client.zscore(PROCESSED, event_id) is not None for event_id in event_ids)
        assert loyalty_dead_letters(client) == []


# --- hand-built events on a Redis of their own


@pytest.fixture(scope="module")
def bare_redis(loyalty) -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def consumer(loyalty, bare_redis) -> Iterator[ServiceProcess]:
    with running_loyalty(loyalty, bare_redis.url, "loyalty-a") as process:
        yield process


def test_an_order_confirmed_of_a_newer_producer_with_an_added_field_is_accepted(bare_redis, consumer):
    customer = f"c-{uuid.uuid4().hex[:8]}"
    newer = OrderConfirmedWithBonus(
        order_id=uuid.uuid4(), customer_id=customer, total=Money(amount=2599, currency="EUR"), bonus_campaign="spring"
    )
    publish(bare_redis.url, newer)

    eventually_sync(lambda: points(consumer, customer) == 25, what="25 points from the newer producer's event")
    client = redis.Redis.from_url(bare_redis.url)
    entry = decode(client.xrevrange(ORDERS_EVENTS, count=1)[0][1][ENVELOPE_FIELD])
    assert entry.version == 2 and b'"bonus_campaign":"spring"' in bytes(entry.payload)
    assert loyalty_dead_letters(client) == []


@pytest.mark.parametrize(
    ("what", "entry", "reason"),
    [
        (
            "a total without currency",
            raw_entry(payload(total={"amount": 100})),
            "/total must have required property 'currency'",
        ),
        ("invalid JSON", b'{"id": "1", "type": "orders.OrderConfirmed", ', "undecodable: not a valid envelope"),
        ("version 0", raw_entry(payload(), version=0), "unknown version"),
    ],
)
def test_an_order_confirmed_it_cannot_handle_is_dead_lettered_with_the_reason(
    bare_redis, consumer, what, entry, reason
):
    client = redis.Redis.from_url(bare_redis.url)
    entry_id = client.xadd(ORDERS_EVENTS, {ENVELOPE_FIELD: entry}).decode()

    eventually_sync(
        lambda: any(letter["dlq_entry_id"] == entry_id for letter in loyalty_dead_letters(client)),
        what=f"{what} in {DLQ}",
    )
    letter = next(letter for letter in loyalty_dead_letters(client) if letter["dlq_entry_id"] == entry_id)
    assert reason in letter["dlq_reason"], letter
    assert letter["envelope"] == entry.decode(errors="replace")  # the original entry, as it was
    assert (letter["dlq_stream"], letter["dlq_consumer"], letter["dlq_deliveries"]) == (ORDERS_EVENTS, "loyalty-a", "1")
    assert int(letter["dlq_failed_at_ms"]) > 0
    eventually_sync(lambda: group_backlog(client) == (0, 0), what="the dead letter acked")


def test_an_event_delivered_again_adds_no_points_twice(bare_redis, consumer):
    customer = f"c-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(bare_redis.url)
    entry = encode(wrap(confirmed(customer, 1000), source="orders"))
    duplicates = metric(consumer, "flotilla_stream_duplicates_total")

    client.xadd(ORDERS_EVENTS, {ENVELOPE_FIELD: entry})
    client.xadd(ORDERS_EVENTS, {ENVELOPE_FIELD: entry})  # the same event again, as a replayed dead letter is

    eventually_sync(lambda: metric(consumer, "flotilla_stream_duplicates_total") == duplicates + 1, what="a duplicate")
    assert points(consumer, customer) == 10


def test_entries_left_pending_by_killed_consumers_are_handled_once_by_the_next_one(loyalty):
    # What a consumer killed between reading and acking leaves: entries delivered to it, pending.
    # "loyalty-b" comes back under its own name and handles its own first; those of "loyalty-gone",
    # which never comes back, it reclaims once they have been idle for STREAM_CLAIM_IDLE_SECONDS.
    server = start_redis()
    try:
        customer = f"c-{uuid.uuid4().hex[:8]}"
        client = redis.Redis.from_url(server.url)
        client.xgroup_create(ORDERS_EVENTS, GROUP, id="0", mkstream=True)
        publish(server.url, *(confirmed(customer, 300) for _ in range(6)))
        client.xreadgroup(GROUP, "loyalty-b", {ORDERS_EVENTS: ">"}, count=3)
        client.xreadgroup(GROUP, "loyalty-gone", {ORDERS_EVENTS: ">"}, count=3)

        with running_loyalty(loyalty, server.url, "loyalty-b", STREAM_CLAIM_IDLE_SECONDS="1") as restarted:
            eventually_sync(lambda: group_backlog(client) == (0, 0), what="every pending entry handled and acked")
            assert points(restarted, customer) == 6 * 3
            assert metric(restarted, "flotilla_stream_reclaimed_total") == 3
            assert metric(restarted, "flotilla_stream_handled_total") == 6
            assert metric(restarted, "flotilla_stream_duplicates_total") == 0
    finally:
        server.close()


def test_it_registers_in_discovery_and_on_sigterm_deregisters_and_exits_0(loyalty, bare_redis):
    async def live() -> list[str]:
        client = aioredis.Redis.from_url(bare_redis.url)
        try:
            return [i.url for i in await RedisRegistry(client).instances("loyalty") if i.instance_id == "loyalty-d"]
        finally:
            await client.aclose()

    with running_loyalty(loyalty, bare_redis.url, "loyalty-d") as process:
        assert asyncio.run(live()) == [process.base_url]  # as the gateway's resolver reads it
        assert process.stop(signal.SIGTERM) == 0
        assert asyncio.run(live()) == []


def test_readiness_says_not_ready_while_redis_is_unreachable(loyalty):
    server = start_redis()
    try:
        with running_loyalty(loyalty, server.url, "loyalty-r", DISCOVERY="none") as process:
            server.stop()
            eventually_sync(
                lambda: httpx.get(f"{process.base_url}/readyz", timeout=10).status_code == 503,
                what="/readyz answering 503 without Redis",
            )
            problem = httpx.get(f"{process.base_url}/readyz", timeout=10).json()
            assert "redis" in problem["detail"], problem
            server.restart(keep_data=False)
            eventually_sync(
                lambda: httpx.get(f"{process.base_url}/readyz", timeout=10).status_code == 200,
                timeout=30,
                what="/readyz ready again once Redis is back",
            )
    finally:
        server.close()
