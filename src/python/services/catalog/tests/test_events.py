"""The catalog's events: written through the outbox in the transaction of each change, relayed to
CATALOG_EVENTS in a real Redis, and read back here as consumers read them (XRANGE)."""

import asyncio
import uuid

import msgspec
import pytest
import redis
import sqlalchemy as sa
from litestar.testing import AsyncTestClient, TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from catalog.tests.conftest import ADMIN
from flotilla_contracts.catalog import Money
from flotilla_contracts.events import CATALOG_EVENTS, ProductCreated, ProductDeactivated, ProductPriceChanged
from flotilla_kit.db import Database
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.envelope import ENVELOPE_FIELD, Envelope, PayloadDecoder, decode
from flotilla_streams.schema import outbox as outbox_table

PAYLOADS = PayloadDecoder([ProductCreated, ProductPriceChanged, ProductDeactivated])


@pytest.fixture
def stream(redis_server):
    """The session's Redis, emptied for this test; reads CATALOG_EVENTS."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def _envelopes(client: redis.Redis) -> list[Envelope]:
    return [decode(fields[ENVELOPE_FIELD]) for _, fields in client.xrange(CATALOG_EVENTS)]


def _events(client: redis.Redis, count: int) -> list[object]:
    """The stream's events, once it holds ``count`` of them. The relay sends in commit order, so once
    the last expected event is there, any event that should not exist would be there too."""
    eventually_sync(lambda: client.xlen(CATALOG_EVENTS) >= count, what=f"{count} events in {CATALOG_EVENTS}")
    envelopes = _envelopes(client)
    assert all(e.source == "catalog" for e in envelopes)
    return [PAYLOADS.decode(e) for e in envelopes]


def _create(client: TestClient, sku: str, amount: int = 450, currency: str = "EUR", **extra) -> dict:
    body = {"sku": sku, "name": "Green tea", "price": {"amount": amount, "currency": currency}, **extra}
    response = client.post("/products", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


def _patch(client: TestClient, product: dict, body: dict, status: int = 200) -> dict:
    response = client.patch(f"/products/{product['id']}", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    return response.json()


def _created(product: dict) -> ProductCreated:
    return ProductCreated(
        product_id=uuid.UUID(product["id"]),
        sku=product["sku"],
        name=product["name"],
        price=Money(**product["price"]),
        active=product["active"],
        version=product["version"],
    )


def test_creating_a_product_publishes_product_created_with_its_data(client, stream):
    product = _create(client, "tea-1", active=False)
    [event] = _events(stream, 1)
    assert event == _created(product)
    assert (event.sku, event.active, event.version) == ("TEA-1", False, 1)
    [envelope] = _envelopes(stream)
    assert envelope.type == "catalog.ProductCreated"


def test_a_price_change_publishes_the_previous_and_the_new_price(client, stream):
    product = _create(client, "TEA-1")
    _patch(client, product, {"price": {"amount": 500, "currency": "EUR"}})
    _patch(client, product, {"price": {"amount": 500, "currency": "USD"}})  # a new currency is a new price
    events = _events(stream, 3)
    product_id = uuid.UUID(product["id"])
    assert events[1:] == [
        ProductPriceChanged(
            product_id=product_id,
            sku="TEA-1",
            price=Money(500, "EUR"),
            previous_price=Money(450, "EUR"),
            version=2,
        ),
        ProductPriceChanged(
            product_id=product_id,
            sku="TEA-1",
            price=Money(500, "USD"),
            previous_price=Money(500, "EUR"),
            version=3,
        ),
    ]


def test_deactivating_publishes_product_deactivated_once(client, stream):
    first, second = _create(client, "TEA-1"), _create(client, "TEA-2")
    assert client.post(f"/products/{first['id']}/deactivate", headers=ADMIN).status_code == 200
    assert client.post(f"/products/{first['id']}/deactivate", headers=ADMIN).status_code == 200  # no change
    _patch(client, second, {"active": False})
    _patch(client, second, {"active": False})  # no change
    events = _events(stream, 4)
    assert events[2:] == [
        ProductDeactivated(product_id=uuid.UUID(first["id"]), sku="TEA-1", version=2),
        ProductDeactivated(product_id=uuid.UUID(second["id"]), sku="TEA-2", version=2),
    ]


def test_changes_that_publish_nothing_or_are_refused_write_no_event(client, stream):
    product = _create(client, "TEA-1", active=False)
    _patch(client, product, {"price": {"amount": 450, "currency": "EUR"}})  # the same price
    _patch(client, product, {"name": "Sencha", "description": "Steamed"})  # not an event of the contract
    _patch(client, product, {"active": False})  # already inactive
    _patch(client, product, {"active": True})  # reactivation: no event in the contract
    _patch(client, product, {"price": {"amount": 1, "currency": "XXX"}}, status=422)
    _patch(client, {"id": str(uuid.uuid4())}, {"price": {"amount": 1, "currency": "EUR"}}, status=404)
    assert client.post("/products", json={"sku": "tea-1", "name": "Again", "price": {"amount": 1, "currency": "EUR"}},
                       headers=ADMIN).status_code == 409  # fmt: skip
    _patch(client, product, {"price": {"amount": 999, "currency": "EUR"}})  # the marker: published last
    events = _events(stream, 2)
    assert [type(e) for e in events] == [ProductCreated, ProductPriceChanged]
    assert events[1].previous_price == Money(450, "EUR") and events[1].version == 4


def test_a_patch_that_changes_price_and_deactivates_publishes_both_in_order(client, stream):
    product = _create(client, "TEA-1")
    _patch(client, product, {"price": {"amount": 300, "currency": "EUR"}, "active": False})
    _, price_changed, deactivated = _events(stream, 3)
    assert isinstance(price_changed, ProductPriceChanged) and price_changed.version == 2
    assert deactivated == ProductDeactivated(product_id=uuid.UUID(product["id"]), sku="TEA-1", version=2)


def test_every_change_of_a_run_arrives_in_the_order_it_committed(client, stream):
    products = [_create(client, f"TEA-{i}") for i in range(3)]
    for amount, product in enumerate(products, start=1):
        _patch(client, product, {"price": {"amount": amount, "currency": "EUR"}})
    client.post(f"/products/{products[0]['id']}/deactivate", headers=ADMIN)
    events = _events(stream, 7)
    assert [(type(e).__name__, e.sku, e.version) for e in events] == [
        ("ProductCreated", "TEA-0", 1),
        ("ProductCreated", "TEA-1", 1),
        ("ProductCreated", "TEA-2", 1),
        ("ProductPriceChanged", "TEA-0", 2),
        ("ProductPriceChanged", "TEA-1", 2),
        ("ProductPriceChanged", "TEA-2", 2),
        ("ProductDeactivated", "TEA-0", 3),
    ]


async def test_each_event_is_an_outbox_row_of_its_change_and_a_refused_change_writes_none(settings, stream):
    with TestClient(create_app(settings)) as client:
        product = _create(client, "TEA-1")
        client.post("/products", json={"sku": "TEA-1", "name": "Twin", "price": {"amount": 1, "currency": "EUR"}},
                    headers=ADMIN)  # fmt: skip
        _patch(client, product, {"price": {"amount": 1, "currency": "EUR"}})
        published = _events(stream, 2)
    db = Database(settings.database_url)
    try:
        rows = await db.fetch_all(sa.select(outbox_table.c.stream, outbox_table.c.event_id).order_by(outbox_table.c.id))
    finally:
        await db.dispose()
    assert [stream_name for stream_name, _ in rows] == [CATALOG_EVENTS, CATALOG_EVENTS]
    assert [event_id for _, event_id in rows] == [e.id for e in _envelopes(stream)]
    assert len(published) == 2


def test_an_event_written_while_redis_is_down_is_relayed_once_it_is_back(tmp_path):
    server = start_redis(persistent=True)
    reader = redis.Redis.from_url(server.url)
    settings = CatalogSettings(
        service_name="catalog", database_url=f"sqlite+aiosqlite:///{tmp_path}/catalog.db", redis_url=server.url
    )
    try:
        with TestClient(create_app(settings)) as client:
            product = _create(client, "TEA-1")
            eventually_sync(lambda: reader.xlen(CATALOG_EVENTS) == 1, what="ProductCreated relayed")
            server.stop()
            # The change does not need Redis: it commits, its event waits in the outbox.
            _patch(client, product, {"price": {"amount": 500, "currency": "EUR"}})
            assert client.post(f"/products/{product['id']}/deactivate", headers=ADMIN).status_code == 200
            server.start()
            events = _events(reader, 3)
        assert [type(e) for e in events] == [ProductCreated, ProductPriceChanged, ProductDeactivated]
        assert [e.version for e in events] == [1, 2, 3]
    finally:
        reader.close()
        server.close()


async def test_admins_changing_one_price_at_once_publish_a_chain_of_previous_prices(settings, stream):
    # Eight admins at once, on SQLite and PostgreSQL: each change must see the one before it, so the
    # events form one chain (each previous_price is the price of the event before) with versions 2..9.
    async with AsyncTestClient(create_app(settings)) as client:
        body = {"sku": "TEA-1", "name": "Green tea", "price": {"amount": 450, "currency": "EUR"}}
        product = (await client.post("/products", json=body, headers=ADMIN)).json()
        amounts = [500 + i for i in range(8)]
        responses = await asyncio.gather(
            *(
                client.patch(
                    f"/products/{product['id']}", json={"price": {"amount": a, "currency": "EUR"}}, headers=ADMIN
                )
                for a in amounts
            )
        )
        assert [r.status_code for r in responses] == [200] * len(amounts)
        final = (await client.get(f"/products/{product['id']}")).json()
        events = await asyncio.to_thread(_events, stream, 1 + len(amounts))
    changes = events[1:]
    assert all(isinstance(e, ProductPriceChanged) for e in changes)
    assert [e.version for e in changes] == list(range(2, 2 + len(amounts)))
    assert [e.previous_price for e in changes] == [Money(450, "EUR")] + [e.price for e in changes[:-1]]
    assert sorted(e.price.amount for e in changes) == amounts
    assert (final["version"], final["price"]) == (changes[-1].version, msgspec.to_builtins(changes[-1].price))
    assert sorted(r.json()["version"] for r in responses) == [e.version for e in changes]
