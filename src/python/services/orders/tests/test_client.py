"""orders_client against a real orders service, served as its own process (python -m orders serve)."""

import uuid

import pytest

from flotilla_contracts.orders import OrderCreate, OrderLineRequest
from flotilla_discovery.balancer import Balancer
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_http.client import HttpClient
from orders.tests.conftest import ADMIN, customer
from orders_client import NotFoundError, OrdersClient, ServiceCallError


@pytest.fixture
async def orders(orders_service):
    http = HttpClient(Balancer(StaticResolver({"orders": [orders_service.base_url]})))
    async with http:
        yield OrdersClient(http)


def _order(*products) -> OrderCreate:
    return OrderCreate(lines=[OrderLineRequest(product_id=uuid.UUID(p["id"]), quantity=1) for p in products])


async def test_an_order_placed_through_the_client_reads_back(orders, catalog):
    tea = catalog.product(amount=300)
    placed = await orders.place_order(_order(tea), idempotency_key=uuid.uuid4().hex, headers=customer("carol"))
    assert placed.status == "awaiting_stock" and placed.total.amount == 300
    assert await orders.get_order(placed.id, headers=customer("carol")) == placed


async def test_placing_again_with_the_key_returns_the_first_order(orders, catalog):
    tea = catalog.product()
    key = uuid.uuid4().hex
    first = await orders.place_order(_order(tea), idempotency_key=key, headers=customer("carol"))
    assert await orders.place_order(_order(tea), idempotency_key=key, headers=customer("carol")) == first


async def test_refusals_are_typed_errors(orders, catalog):
    with pytest.raises(ServiceCallError) as refused:
        await orders.place_order(
            OrderCreate(lines=[OrderLineRequest(product_id=uuid.uuid4(), quantity=1)]),
            idempotency_key=uuid.uuid4().hex,
            headers=customer("carol"),
        )
    assert refused.value.status == 422 and "unknown product" in refused.value.detail
    with pytest.raises(NotFoundError):
        await orders.get_order(uuid.uuid4(), headers=customer("carol"))
    placed = await orders.place_order(
        _order(catalog.product()), idempotency_key=uuid.uuid4().hex, headers=customer("carol")
    )
    with pytest.raises(NotFoundError):
        await orders.get_order(placed.id, headers=customer("dave"))


async def test_listing_pages_through_the_callers_orders(orders, catalog):
    tea = catalog.product()
    caller = customer(f"erin-{uuid.uuid4().hex[:6]}")
    placed = [await orders.place_order(_order(tea), idempotency_key=uuid.uuid4().hex, headers=caller) for _ in range(3)]
    first = await orders.list_orders(limit=2, headers=caller)
    rest = await orders.list_orders(cursor=first.next_cursor, limit=2, headers=caller)
    assert [o.id for o in first.items + rest.items] == [o.id for o in reversed(placed)]
    assert rest.next_cursor is None


async def test_an_admin_lists_a_customers_orders_and_a_customer_cannot(orders, catalog):
    caller = customer(f"fred-{uuid.uuid4().hex[:6]}")
    placed = await orders.place_order(_order(catalog.product()), idempotency_key=uuid.uuid4().hex, headers=caller)
    listed = await orders.list_orders(customer_id=caller["x-caller-id"], headers=ADMIN)
    assert [o.id for o in listed.items] == [placed.id]
    with pytest.raises(ServiceCallError) as refused:
        await orders.list_orders(customer_id=caller["x-caller-id"], headers=customer("mallory"))
    assert refused.value.status == 403
