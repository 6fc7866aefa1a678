"""inventory_client against the inventory served for real (a process on loopback), as orders, the
gateway's storefront and the tools call it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis

from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_contracts.inventory import ReservedLine, StockLevel
from flotilla_discovery.balancer import Balancer
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_http.client import HttpClient
from flotilla_kit.testing.waiting import eventually
from inventory.tests.conftest import ADMIN, order_placed, publish
from inventory_client import InventoryClient, NotFoundError, ServiceCallError


@pytest.fixture
async def client(inventory) -> AsyncIterator[InventoryClient]:
    http = HttpClient(Balancer(StaticResolver({"inventory": [inventory.base_url]})))
    async with http:
        yield InventoryClient(http)


async def test_stock_is_set_adjusted_and_read_back(client):
    product = uuid.uuid4()
    assert await client.set_stock(product, 10, "first count", headers=ADMIN) == StockLevel(
        product_id=product, available=10, on_hand=10, reserved=0
    )
    assert (await client.adjust_stock(product, -3, "broken", headers=ADMIN)).on_hand == 7
    assert await client.get_stock(product) == StockLevel(product_id=product, available=7, on_hand=7, reserved=0)


async def test_a_product_without_stock_is_not_found(client):
    with pytest.raises(NotFoundError):
        await client.get_stock(uuid.uuid4())


async def test_a_change_the_stock_rules_refuse_raises_with_the_reason(client):
    product = uuid.uuid4()
    await client.set_stock(product, 2, "count", headers=ADMIN)
    with pytest.raises(ServiceCallError) as refused:
        await client.adjust_stock(product, -3, "lost", headers=ADMIN)
    assert refused.value.status == 409 and "only 2 are on hand" in refused.value.detail


async def test_admin_calls_forward_the_callers_identity(client):
    with pytest.raises(ServiceCallError) as refused:
        await client.set_stock(uuid.uuid4(), 1, "count", headers={"x-caller-id": "u1", "x-caller-roles": "customer"})
    assert refused.value.status == 403


async def test_a_reservation_made_from_an_order_event_is_read_back(client, redis_server):
    product = uuid.uuid4()
    await client.set_stock(product, 5, "count", headers=ADMIN)
    placed = order_placed((product, 2))
    with pytest.raises(NotFoundError):
        await client.get_reservation(placed.order_id, headers=ADMIN)
    with redis.Redis.from_url(redis_server.url) as streams:
        publish(streams, ORDERS_EVENTS, placed)

    async def reserved() -> bool:
        return (await client.get_stock(product)).reserved == 2

    await eventually(reserved, what="the order's units reserved")
    reservation = await client.get_reservation(placed.order_id, headers=ADMIN)
    assert reservation.status == "reserved"
    assert reservation.lines == [ReservedLine(product_id=product, quantity=2)]
