"""The streams view and the replay action against a real Redis: real groups, a real consumer, real dead letters."""

import asyncio
import uuid

import pytest
from console.app import create_app
from console.tests.conftest import ADMIN, OPERATOR, console_settings
from litestar.testing import AsyncTestClient

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import OrderLine, OrderPlaced
from flotilla_discovery.instance import Instance
from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.testing.waiting import eventually
from flotilla_streams.consumer import ConsumerOptions, HandlerContext, Handlers, StreamConsumer
from flotilla_streams.dlq import DeadLetter, dead_letter, list_entries
from flotilla_streams.publisher import Publisher

STREAM = "orders.events"


def order(n: int) -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.UUID(int=n),
        customer_id=f"c-{n}",
        lines=[OrderLine(product_id=uuid.UUID(int=1), sku="TEA-1", quantity=1, unit_price=Money(450, "EUR"))],
        total=Money(450, "EUR"),
    )


@pytest.fixture
async def console(tmp_path, redis_server, redis):
    """The console in write mode, on the test's emptied Redis."""
    # Any consumer idle a millisecond counts as dead here: the tests say which consumers are gone.
    settings = console_settings(tmp_path, redis_server, console_write=True, console_dead_consumer_idle_seconds=0.001)
    async with AsyncTestClient(create_app(settings)) as client:
        client.headers.update(OPERATOR)
        yield client


async def test_the_streams_view_shows_each_groups_lag_pending_consumers_and_dead_letters(console, redis):
    publisher = Publisher(redis, source="orders")
    for n in range(3):
        await publisher.publish(STREAM, order(n))
    await redis.xgroup_create(STREAM, "payments", id="0")
    await redis.xgroup_create(STREAM, "inventory", id="0")
    read = await redis.xreadgroup("payments", "payments-1", {STREAM: ">"}, count=2)  # two pending, one not delivered
    first_id, first_fields = read[0][1][0]
    await dead_letter(
        redis, STREAM, "payments", "payments-1", [DeadLetter(first_id, first_fields, "ValueError: card declined", 5)]
    )

    response = await console.get("/api/streams")
    assert response.status_code == 200, response.text
    [view] = response.json()["items"]  # the .dlq stream is shown as the stream's dead letters, not as a stream
    assert (view["stream"], view["length"], view["dead_letters"]) == (STREAM, 3, 1)
    groups = {g["group"]: g for g in view["groups"]}
    assert (groups["inventory"]["lag"], groups["inventory"]["pending"], groups["inventory"]["consumers"]) == (3, 0, [])
    payments = groups["payments"]
    assert (payments["lag"], payments["pending"]) == (1, 1)  # the dead-lettered entry was acked
    assert [c["name"] for c in payments["consumers"]] == ["payments-1"] and payments["consumers"][0]["pending"] == 1
    assert payments["oldest_pending_idle_ms"] >= 0

    [letter] = (await console.get(f"/api/streams/{STREAM}/dead-letters")).json()["items"]
    detail = (await console.get(f"/api/streams/{STREAM}/dead-letters/{letter['id']}")).json()
    assert (detail["reason"], detail["deliveries"], detail["group"]) == ("ValueError: card declined", 5, "payments")
    assert detail["event_type"] == "orders.OrderPlaced" and detail["payload"]["payload"]["customer_id"] == "c-0"
    assert (await console.get(f"/api/streams/{STREAM}/dead-letters/1-1")).status_code == 404
    assert (await console.get(f"/api/streams/{STREAM}/dead-letters/not-an-id")).status_code == 400


async def test_payload_fields_named_as_secrets_are_masked_in_a_dead_letter(console, redis):
    envelope = (
        b'{"id": "e-1", "type": "payments.Charge", "payload": {"card_number": "4111", "Token": "t", "amount": 5}}'
    )
    entry_id = await redis.xadd(STREAM, {b"envelope": envelope})
    await redis.xgroup_create(STREAM, "payments", id="0")
    await dead_letter(redis, STREAM, "payments", "p-1", [DeadLetter(entry_id, {b"envelope": envelope}, "boom", 1)])
    [letter] = (await console.get(f"/api/streams/{STREAM}/dead-letters")).json()["items"]
    assert letter["payload"]["payload"] == {"card_number": "***", "Token": "***", "amount": 5}


async def test_a_dead_letter_replayed_is_handled_once_and_a_second_replay_finds_nothing(console, redis):
    handled: list[str] = []
    broken = {"on": True}
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def charge(event: OrderPlaced, ctx: HandlerContext) -> None:
        if broken["on"]:
            raise ValueError("the provider is down")
        handled.append(ctx.envelope.id)

    options = ConsumerOptions(block_ms=50, retry_backoff_ms=10, max_retry_backoff_ms=20, max_deliveries=2)
    consumer = StreamConsumer(
        redis, group="payments", consumer="payments-1", streams=[STREAM], handlers=handlers, options=options
    )
    task = asyncio.create_task(consumer.run())
    try:
        await Publisher(redis, source="orders").publish(STREAM, order(7))

        async def dead_lettered() -> bool:
            return len(await list_entries(redis, STREAM)) == 1

        await eventually(dead_lettered, what="the failing event dead-lettered")
        [letter] = await list_entries(redis, STREAM)
        broken["on"] = False
        path = f"/api/streams/{STREAM}/dead-letters/{letter.id}/replay"

        response = await console.post(path, json={"confirm": letter.id}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json() == {"stream": STREAM, "replayed": [letter.id]}

        async def handled_once() -> bool:
            return len(handled) == 1

        await eventually(handled_once, what="the replayed event handled")
        length = await redis.xlen(STREAM)
        again = await console.post(path, json={"confirm": letter.id}, headers=ADMIN)
        assert again.status_code == 404 and "already replayed" in again.json()["detail"]
        assert await redis.xlen(STREAM) == length  # the refused replay added nothing to the stream
        assert await list_entries(redis, STREAM) == []
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
    assert len(handled) == 1
    audit = (await console.get("/api/audit")).json()["items"]
    assert [(a["caller"], a["outcome"]) for a in audit][:2] == [
        ("admin-1", f"refused: no dead letter {letter.id} on {STREAM} (already replayed?)"),
        ("admin-1", "replayed"),
    ]


async def _one_dead_letter(redis) -> str:
    entry_id = await redis.xadd(STREAM, {b"envelope": b"{}"})
    await redis.xgroup_create(STREAM, "payments", id="0")
    await dead_letter(redis, STREAM, "payments", "p-1", [DeadLetter(entry_id, {b"envelope": b"{}"}, "undecodable", 1)])
    return (await list_entries(redis, STREAM))[0].id


async def test_a_replay_needs_an_admin_and_the_confirmation(console, redis):
    dlq_id = await _one_dead_letter(redis)
    path = f"/api/streams/{STREAM}/dead-letters/{dlq_id}/replay"
    console.headers.pop("authorization")
    assert (await console.post(path, json={"confirm": dlq_id})).status_code == 401
    # Caller headers are the gateway's word to services behind it; the console does not take them.
    forged = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}
    assert (await console.post(path, json={"confirm": dlq_id}, headers=forged)).status_code == 401
    assert (await console.post(path, json={"confirm": dlq_id}, headers=OPERATOR)).status_code == 403
    wrong = await console.post(path, json={"confirm": "yes"}, headers=ADMIN)
    assert wrong.status_code == 400 and dlq_id in wrong.json()["detail"]
    assert (await console.post(path, json={}, headers=ADMIN)).status_code == 400
    assert [entry.id for entry in await list_entries(redis, STREAM)] == [dlq_id]


async def test_a_read_only_console_says_so_and_refuses_a_replay_with_403(tmp_path, redis_server, redis):
    dlq_id = await _one_dead_letter(redis)
    async with AsyncTestClient(create_app(console_settings(tmp_path, redis_server))) as console:
        console.headers.update(OPERATOR)
        assert (await console.get("/api/config")).json()["write"] is False
        response = await console.post(
            f"/api/streams/{STREAM}/dead-letters/{dlq_id}/replay", json={"confirm": dlq_id}, headers=ADMIN
        )
        assert response.status_code == 403 and "read-only" in response.json()["detail"]
        audit = (await console.get("/api/audit")).json()["items"]
    assert [entry.id for entry in await list_entries(redis, STREAM)] == [dlq_id]
    assert audit[0]["outcome"].startswith("refused: the console is read-only")


async def test_replay_all_puts_every_dead_letter_back_once_and_is_audited(console, redis):
    await redis.xgroup_create(STREAM, "payments", id="0", mkstream=True)
    for n in range(3):
        entry_id = await redis.xadd(STREAM, {b"envelope": f'{{"n":{n}}}'.encode()})
        await dead_letter(redis, STREAM, "payments", "p-1", [DeadLetter(entry_id, {b"n": str(n).encode()}, "bad", 5)])
    path = f"/api/streams/{STREAM}/dead-letters/replay-all"
    wrong = await console.post(path, json={"confirm": "yes"}, headers=ADMIN)
    assert wrong.status_code == 400 and STREAM in wrong.json()["detail"]
    length = await redis.xlen(STREAM)
    done = await console.post(path, json={"confirm": STREAM}, headers=ADMIN)
    assert done.status_code == 200 and len(done.json()["replayed"]) == 3
    assert await list_entries(redis, STREAM) == [] and await redis.xlen(STREAM) == length + 3
    again = await console.post(path, json={"confirm": STREAM}, headers=ADMIN)
    assert again.json()["replayed"] == [] and await redis.xlen(STREAM) == length + 3
    audit = (await console.get("/api/audit")).json()["items"]
    assert [(a["action"], a["outcome"]) for a in audit][:3] == [
        ("replay all dead letters", "replayed 0"),
        ("replay all dead letters", "replayed 3"),
        ("replay all dead letters", f"refused: confirm must repeat the stream's name ({STREAM})"),
    ]


async def test_a_dead_consumers_pending_entries_go_to_the_group_and_a_live_one_handles_them(console, redis):
    publisher = Publisher(redis, source="orders")
    await redis.xgroup_create(STREAM, "payments", id="0", mkstream=True)
    for n in range(3):
        await publisher.publish(STREAM, order(n))
    # payments-dead read all three and died before acking them.
    await redis.xreadgroup("payments", "payments-dead", {STREAM: ">"}, count=10)
    handled: list[str] = []
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def handle(event: OrderPlaced, context: HandlerContext) -> None:
        handled.append(str(event.order_id))

    # A live consumer that would wait 10 minutes before presuming another dead on its own.
    options = ConsumerOptions(claim_idle_ms=600_000, block_ms=100, maintenance_interval_ms=50)
    consumer = StreamConsumer(
        redis, group="payments", consumer="payments-live", streams=[STREAM], handlers=handlers, options=options
    )
    task = asyncio.create_task(consumer.run())
    try:
        # One new event makes the live consumer a member of the group (Redis 6 adds members on delivery).
        await publisher.publish(STREAM, order(3))

        async def live_member() -> bool:
            return handled == [str(uuid.UUID(int=3))]

        await eventually(live_member, what="the live consumer's first event")
        path = f"/api/streams/{STREAM}/groups/payments/consumers/payments-dead/claim"
        assert (await console.post(path, json={"confirm": "payments"}, headers=ADMIN)).status_code == 400
        answer = await console.post(path, json={"confirm": "payments-dead"}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "stream": STREAM, "group": "payments", "consumer": "payments-dead", "claimed": 3, "to": "payments-live",
            "removed": True,
        }  # fmt: skip

        async def all_handled() -> bool:
            return len(handled) == 4

        await eventually(all_handled, what="the handed-over entries handled by the live consumer")
        assert (await redis.xpending(STREAM, "payments"))["pending"] == 0
        gone = await console.post(path, json={"confirm": "payments-dead"}, headers=ADMIN)
        assert gone.status_code == 404 and "no consumer payments-dead" in gone.json()["detail"]
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
    assert sorted(handled) == sorted(str(uuid.UUID(int=n)) for n in range(4))


async def test_a_registered_or_only_consumer_is_not_claimed(console, redis):
    await redis.xgroup_create(STREAM, "payments", id="0", mkstream=True)
    await redis.xadd(STREAM, {b"envelope": b"{}"})
    await redis.xreadgroup("payments", "payments-9", {STREAM: ">"}, count=1)
    path = f"/api/streams/{STREAM}/groups/payments/consumers/payments-9/claim"
    alone = await console.post(path, json={"confirm": "payments-9"}, headers=ADMIN)
    assert alone.status_code == 409 and "only consumer" in alone.json()["detail"]
    await redis.xreadgroup("payments", "payments-8", {STREAM: ">"}, count=1)
    registry = RedisRegistry(redis, namespace="flotilla", ttl_seconds=30)
    await registry.register(Instance(service="payments", instance_id="payments-9", url="http://127.0.0.1:1"))
    alive = await console.post(path, json={"confirm": "payments-9"}, headers=ADMIN)
    assert alive.status_code == 409 and "registered, live instance" in alive.json()["detail"]
    assert (await redis.xpending(STREAM, "payments"))["pending"] == 1


async def test_a_consumer_active_within_the_dead_consumer_time_keeps_its_entries(tmp_path, redis_server, redis):
    await redis.xgroup_create(STREAM, "payments", id="0", mkstream=True)
    for _ in range(2):
        await redis.xadd(STREAM, {b"envelope": b"{}"})
    await redis.xreadgroup("payments", "payments-busy", {STREAM: ">"}, count=1)
    await redis.xreadgroup("payments", "payments-other", {STREAM: ">"}, count=1)
    settings = console_settings(tmp_path, redis_server, console_write=True)  # 60 s by default
    async with AsyncTestClient(create_app(settings)) as console:
        path = f"/api/streams/{STREAM}/groups/payments/consumers/payments-busy/claim"
        refused = await console.post(path, json={"confirm": "payments-busy"}, headers=ADMIN)
        assert refused.status_code == 409 and "may be alive" in refused.json()["detail"]
    consumers = {c["name"]: c["pending"] for c in await redis.xinfo_consumers(STREAM, "payments")}
    assert consumers == {b"payments-busy": 1, b"payments-other": 1}


async def test_hostile_names_and_ids_and_keys_that_are_no_streams_get_4xx(console, redis):
    await redis.set("plain.dlq", "not a stream")
    await redis.set("plain", "not a stream")
    for path in (
        f"/api/streams/{STREAM}/dead-letters/%C2%B2-1",
        f"/api/streams/{STREAM}/dead-letters/99999999999999999999999-1",
        f"/api/streams/{STREAM}/dead-letters?after=%C2%B2-1",
        "/api/streams/bad%01name/dead-letters",
    ):
        assert (await console.get(path)).status_code == 400, path
    assert (await console.get("/api/streams/plain/dead-letters")).status_code == 409
    replay_all = await console.post(
        "/api/streams/plain/dead-letters/replay-all", json={"confirm": "plain"}, headers=ADMIN
    )
    assert replay_all.status_code == 409 and "no stream" in replay_all.json()["detail"]
    audit = (await console.get("/api/audit")).json()["items"]
    assert audit[0]["outcome"].startswith("refused: ") or audit[0]["outcome"].startswith("failed: ")
    assert audit[0]["at"].endswith("Z") or audit[0]["at"].endswith("+00:00")  # UTC, said so


async def test_redis_out_of_reach_is_503_not_500(tmp_path, redis_server):
    from flotilla_kit.testing.ports import free_port

    # Not registered: the heartbeat's pooled connection would keep the old port (a connection keeps
    # the address it was made with) and serve a request from the real Redis after the switch below.
    settings = console_settings(tmp_path, redis_server, console_write=True, discovery_register=False)
    async with AsyncTestClient(create_app(settings)) as console:
        console.headers.update(OPERATOR)
        console.app.state.redis.connection_pool.connection_kwargs["port"] = free_port()  # Redis is gone
        await console.app.state.redis.connection_pool.disconnect()
        for path in ("/api/streams", f"/api/streams/{STREAM}/dead-letters"):
            answer = await console.get(path)
            assert answer.status_code == 503 and answer.headers["retry-after"], path
