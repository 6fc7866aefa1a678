"""Stock is never oversold, whatever runs at once: handlers on two engines (two instances) of one
database, and two whole instances consuming one stream, on SQLite and PostgreSQL."""

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from flotilla_contracts.events import INVENTORY_EVENTS, ORDERS_EVENTS, Event, StockRejected, StockReserved
from flotilla_kit.db import Database
from flotilla_kit.migrations import migrate
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.consumer import ConsumerOptions, HandlerContext
from flotilla_streams.envelope import ENVELOPE_FIELD, decode, wrap
from flotilla_streams.outbox import Outbox
from flotilla_streams.schema import outbox as outbox_table
from inventory import handlers, store
from inventory.app import create_app
from inventory.domain import StockChange
from inventory.tests.conftest import ADMIN, order_cancelled, order_placed, publish, settings_for

STOCK, QUANTITY, ORDERS = 10, 3, 40  # 3 orders fit (9 units); 37 must be rejected


@pytest.fixture
async def two_instances(database_url):
    """Two engines on one fresh database, as two instances of the inventory have."""
    databases = [Database(database_url), Database(database_url)]
    await migrate(databases[0], "inventory.migrations")
    yield databases
    for database in databases:
        await database.dispose()


async def _handle(db: Database, handler, event: Event) -> None:
    """Run a handler as the consumer does: in a transaction, with the outbox, retried when it fails
    (as the consumer retries a pending entry)."""
    for attempt in range(20):
        try:
            async with db.transaction() as session:
                context = HandlerContext(
                    wrap(event, source="tests"), ORDERS_EVENTS, attempt + 1, session, Outbox(source="inventory")
                )
                await handler(event, context)
            return
        except sa.exc.DBAPIError:  # e.g. a deadlock PostgreSQL broke, or SQLite's lock wait running out
            await asyncio.sleep(0.01 * attempt)
    raise AssertionError(f"{handler.__name__} failed 20 times")


async def _published(db: Database) -> list[Event]:
    decoder = msgspec.json.Decoder(StockReserved | StockRejected)
    rows = await db.fetch_all(sa.select(outbox_table.c.envelope).order_by(outbox_table.c.id))
    return [decoder.decode(decode(row.envelope).payload) for row in rows]


async def _set_stock(db: Database, product: uuid.UUID, on_hand: int) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as session:
        await store.ensure_stock(session, product, now)
        await store.change_on_hand(session, product, StockChange(on_hand, on_hand), reason="count", now=now)


async def _stock_row(db: Database, product: uuid.UUID):
    return await db.fetch_one(store.select_stock(product))


async def test_concurrent_orders_on_two_engines_reserve_exactly_what_fits(two_instances):
    product = uuid.uuid4()
    await _set_stock(two_instances[0], product, STOCK)
    orders = [order_placed((product, QUANTITY)) for _ in range(ORDERS)]
    await asyncio.gather(
        *(_handle(two_instances[i % 2], handlers.on_order_placed, order) for i, order in enumerate(orders))
    )
    row = await _stock_row(two_instances[0], product)
    assert (row.on_hand, row.reserved) == (STOCK, (STOCK // QUANTITY) * QUANTITY)
    answers = Counter(type(event).__name__ for event in await _published(two_instances[0]))
    assert answers == {"StockReserved": STOCK // QUANTITY, "StockRejected": ORDERS - STOCK // QUANTITY}
    statuses = await two_instances[1].fetch_all(sa.select(store.reservations.c.status))
    assert Counter(row.status for row in statuses) == {"reserved": 3, "rejected": 37}


async def test_an_order_placed_and_cancelled_at_once_on_two_engines_holds_nothing(two_instances):
    """Whichever of the two comes first, the order ends released and its units free: never reserved
    after its cancellation, never released twice."""
    product = uuid.uuid4()
    await _set_stock(two_instances[0], product, 1000)
    orders = [order_placed((product, 2)) for _ in range(20)]
    await asyncio.gather(
        *(_handle(two_instances[0], handlers.on_order_placed, order) for order in orders),
        *(_handle(two_instances[1], handlers.on_order_cancelled, order_cancelled(order.order_id)) for order in orders),
    )
    row = await _stock_row(two_instances[0], product)
    assert (row.on_hand, row.reserved) == (1000, 0)
    reservations = await two_instances[0].fetch_all(sa.select(store.reservations))
    assert len(reservations) == 20 and {r.status for r in reservations} == {"released"}
    reserved_first = [r for r in reservations if r.reason != "cancelled before reservation"]
    # An order reserved before its cancellation was answered StockReserved; a tombstoned one got no answer.
    assert len(await _published(two_instances[0])) == len(reserved_first)


def test_concurrent_orders_through_two_running_instances_never_oversell(database_url, redis_server, streams):
    # Small batches, so that both instances get a share of the orders.
    options = ConsumerOptions(batch_size=4, block_ms=50, retry_backoff_ms=10, maintenance_interval_ms=20)
    first = create_app(settings_for(database_url, redis_server.url, "inventory-1"), consumer_options=options)
    second = create_app(settings_for(database_url, redis_server.url, "inventory-2"), consumer_options=options)
    product = uuid.uuid4()
    with TestClient(first) as one, TestClient(second) as two:
        set_stock = {"on_hand": STOCK, "reason": "count"}
        assert one.put(f"/stock/{product}", json=set_stock, headers=ADMIN).status_code == 200
        pipe = streams.pipeline(transaction=False)
        for _ in range(ORDERS):
            publish(pipe, ORDERS_EVENTS, order_placed((product, QUANTITY)))
        pipe.execute()
        eventually_sync(lambda: len(_answers(streams)) == ORDERS, what="an answer to every order")
        level = two.get(f"/stock/{product}").json()
        answers = _answers(streams)
        pending = streams.xpending(ORDERS_EVENTS, "inventory")["pending"]
        consumers = {c["name"] for c in streams.xinfo_consumers(ORDERS_EVENTS, "inventory")}
    assert level == {"product_id": str(product), "available": 1, "on_hand": STOCK, "reserved": 9}
    assert Counter(answers.values()) == {
        "inventory.StockReserved": STOCK // QUANTITY,
        "inventory.StockRejected": ORDERS - STOCK // QUANTITY,
    }
    assert pending == 0
    assert consumers == {b"inventory-1", b"inventory-2"}


def _answers(streams) -> dict[uuid.UUID, str]:
    """The answer to each order, by order id. Delivery is at least once (two relays of one SQLite
    file may both send an event), so an event may be there twice, under its one id; two different
    events answering one order would be a double decision, and fail the test."""
    by_event = {e.id: e for e in (decode(fields[ENVELOPE_FIELD]) for _, fields in streams.xrange(INVENTORY_EVENTS))}
    answers: dict[uuid.UUID, str] = {}
    for envelope in by_event.values():
        order_id = msgspec.json.decode(envelope.payload, type=StockReserved | StockRejected).order_id
        assert order_id not in answers, f"order {order_id} answered twice"
        answers[order_id] = envelope.type
    return answers
