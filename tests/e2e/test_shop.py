"""The reference shop end to end: orders through the saga, every service a real process, callers
through the gateway with JWTs. Each test states its invariant as counts: orders by final state,
reservations, captures, refunds, notifications, and every consumer group drained with no dead letter.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e.shop import final_order, new_product, place_order, stock
from stack.runner import Platform, running_platform

from flotilla_kit.testing.waiting import eventually_sync

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    # Payments declines above 1000.00 EUR; the saga's steps time out after 30 s (not reached here).
    env = {"payments": {"DECLINE_ABOVE": "100000"}}
    with running_platform(tmp_path_factory.mktemp("shop"), env=env) as platform:
        yield platform


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client("admin", sub="admin-1") as client:
        yield client


@pytest.fixture
def customer(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client("customer", sub=f"customer-{uuid.uuid4().hex[:8]}") as client:
        yield client


def _payment(admin: httpx.Client, order_id: str) -> dict[str, Any] | None:
    response = admin.get(f"/api/payments/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()
    return payment


def _reservation(admin: httpx.Client, order_id: str) -> dict[str, Any] | None:
    response = admin.get(f"/api/inventory/reservations/{order_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    reservation: dict[str, Any] = response.json()
    return reservation


def _notifications(client: httpx.Client, order_id: str) -> list[dict[str, Any]]:
    response = client.get("/api/notifications", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _settled(platform: Platform) -> None:
    """Every event handled and acked, none dead-lettered."""
    platform.wait_until_drained()
    assert platform.dead_letters() == 0


def test_an_order_with_stock_and_a_good_card_is_confirmed_captured_and_notified_once(platform, admin, customer):
    product = new_product(admin, price=450, stock=10)

    placed = place_order(customer, [(product, 2)])

    assert placed.status_code == 201, placed.text
    order = final_order(customer, placed.json()["id"])
    assert order["status"] == "confirmed", order
    assert order["total"] == {"amount": 900, "currency": "EUR"}
    assert [step["step"] for step in order["history"]][0] == "placed"
    _settled(platform)
    assert stock(admin, product) | {"product_id": product} == {
        "product_id": product,
        "available": 8,
        "on_hand": 8,
        "reserved": 0,
    }
    assert _reservation(admin, order["id"])["status"] == "committed"
    payment = _payment(admin, order["id"])
    assert payment is not None and payment["status"] == "captured" and payment["amount"]["amount"] == 900
    notifications = _notifications(customer, order["id"])
    assert [n["kind"] for n in notifications] == ["order_confirmed"]


def test_an_order_over_the_stock_is_cancelled_with_nothing_reserved_and_nothing_charged(platform, admin, customer):
    product = new_product(admin, stock=3)

    placed = place_order(customer, [(product, 4)])

    order = final_order(customer, placed.json()["id"])
    assert order["status"] == "cancelled", order
    _settled(platform)
    assert stock(admin, product)["reserved"] == 0 and stock(admin, product)["on_hand"] == 3
    assert _reservation(admin, order["id"])["status"] == "rejected"
    # Payments learns of the cancellation only: it records that nothing may be captured for it.
    assert _payment(admin, order["id"])["status"] == "cancelled"
    assert [n["kind"] for n in _notifications(customer, order["id"])] == ["order_cancelled"]


def test_a_declined_payment_cancels_the_order_and_releases_its_stock(platform, admin, customer):
    product = new_product(admin, stock=5)

    placed = place_order(customer, [(product, 2)], card_token="tok_declined")

    order = final_order(customer, placed.json()["id"])
    assert order["status"] == "cancelled", order
    _settled(platform)
    assert stock(admin, product) | {"product_id": product} == {
        "product_id": product,
        "available": 5,
        "on_hand": 5,
        "reserved": 0,
    }
    assert _reservation(admin, order["id"])["status"] == "released"
    assert _payment(admin, order["id"])["status"] == "declined"
    assert [n["kind"] for n in _notifications(customer, order["id"])] == ["order_cancelled"]


def test_the_same_idempotency_key_twice_creates_one_order(platform, admin, customer):
    product = new_product(admin, stock=5)
    key = uuid.uuid4().hex

    first = place_order(customer, [(product, 1)], key=key)
    again = place_order(customer, [(product, 1)], key=key)
    other_body = place_order(customer, [(product, 2)], key=key)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert other_body.status_code == 422, other_body.text
    final_order(customer, first.json()["id"])
    _settled(platform)
    listed = customer.get("/api/orders").json()["items"]
    assert [o["id"] for o in listed] == [first.json()["id"]]
    assert stock(admin, product)["on_hand"] == 4  # one order's unit, not two


def test_a_customer_sees_only_their_own_orders(platform, admin, customer):
    product = new_product(admin, stock=5)
    order_id = place_order(customer, [(product, 1)]).json()["id"]
    with platform.client("customer", sub="someone-else") as stranger:
        assert stranger.get(f"/api/orders/{order_id}").status_code == 404
        assert stranger.get("/api/orders").json()["items"] == []
        assert _notifications(stranger, order_id) == []
    final_order(customer, order_id)
    _settled(platform)


def test_fifty_concurrent_orders_on_limited_stock_never_oversell_and_all_end(platform, admin):
    units = 20
    product = new_product(admin, stock=units)
    customers = [platform.client("customer", sub=f"rush-{i}") for i in range(50)]

    def order(customer: httpx.Client) -> str:
        placed = place_order(customer, [(product, 1)])
        assert placed.status_code == 201, placed.text
        order_id: str = placed.json()["id"]
        return order_id

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            order_ids = list(pool.map(order, customers))
        finals = [final_order(c, order_id, timeout=120) for c, order_id in zip(customers, order_ids, strict=True)]
    finally:
        for customer in customers:
            customer.close()

    by_state = Counter(order["status"] for order in finals)
    assert by_state == {"confirmed": units, "cancelled": 50 - units}, by_state
    _settled(platform)
    level = stock(admin, product)
    assert (level["on_hand"], level["reserved"]) == (0, 0)
    payments = Counter(_payment(admin, order_id)["status"] for order_id in order_ids)
    assert payments == {"captured": units, "cancelled": 50 - units}, payments
    reservations = Counter(_reservation(admin, order_id)["status"] for order_id in order_ids)
    assert reservations == {"committed": units, "rejected": 50 - units}, reservations
    notified = [len(_notifications(admin, order_id)) for order_id in order_ids]
    assert notified == [1] * 50


@pytest.fixture(scope="module")
def platform_without_payments(tmp_path_factory) -> Iterator[Platform]:
    """The shop with payments down, and saga steps that time out after 3 s."""
    env = {"orders": {"SAGA_STEP_TIMEOUT_SECONDS": "3", "SWEEP_INTERVAL_SECONDS": "0.2"}}
    services = ("catalog", "inventory", "orders", "notifications")
    with running_platform(tmp_path_factory.mktemp("no-payments"), services=services, env=env) as platform:
        yield platform


def test_a_payment_step_that_never_answers_ends_cancelled_and_a_late_capture_is_refunded(platform_without_payments):
    platform = platform_without_payments
    with platform.client("admin", sub="admin-1") as admin, platform.client("customer", sub="late") as customer:
        product = new_product(admin, stock=5)

        order = final_order(customer, place_order(customer, [(product, 2)]).json()["id"])

        assert order["status"] == "cancelled", order
        assert "payment" in (order["cancel_reason"] or ""), order
        eventually_sync(lambda: stock(admin, product)["reserved"] == 0, what="the reservation released")
        assert stock(admin, product)["on_hand"] == 5

        # Payments comes back and finds the request first, then the cancellation, in its stream:
        # what it captures late, it refunds.
        platform.start("payments")
        eventually_sync(
            lambda: (_payment(admin, order["id"]) or {}).get("status") in ("refunded", "cancelled"),
            timeout=30,
            what="the late payment refunded or never captured",
        )
        _settled(platform)
        assert final_order(customer, order["id"])["status"] == "cancelled"
        assert [n["kind"] for n in _notifications(customer, order["id"])] == ["order_cancelled"]
