"""A service stopped under the shop: orders killed mid-saga and started again; the catalog down.

Real processes (stack.runner): Redis, every service, the gateway, callers through the gateway.
"""

from __future__ import annotations

import concurrent.futures
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest
from e2e.shop import place_order
from faults.flow import outcome, stocked_product
from stack.runner import Platform, running_platform

from flotilla_contracts.orders import FINAL_STATUSES
from flotilla_kit.testing.waiting import eventually_sync

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    # Payments takes 300 ms per capture: sagas stay in flight long enough to be interrupted.
    env = {"payments": {"PROVIDER_LATENCY_MS": "300"}}
    with running_platform(tmp_path_factory.mktemp("service-faults"), env=env) as platform:
        yield platform


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client("admin", sub="admin-1") as client:
        yield client


def _place(platform: Platform, product: str, count: int) -> list[str]:
    def one(n: int) -> str:
        with platform.client("customer", sub=f"buyer-{n}") as customer:
            placed = place_order(customer, [(product, 1)])
        assert placed.status_code == 201, placed.text
        order_id: str = placed.json()["id"]
        return order_id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_orders_killed_mid_saga_resumes_every_saga_when_it_starts_again(platform, admin):
    product = stocked_product(admin)
    orders = _place(platform, product, 20)
    statuses = {admin.get(f"/api/orders/{o}").json()["status"] for o in orders}
    assert statuses - set(FINAL_STATUSES), f"every saga ended before the kill: {statuses}"

    platform.stop("orders", signal.SIGKILL)
    # Meanwhile inventory and payments go on answering into their streams.
    with platform.client("customer", sub="while-down") as customer:
        refused = place_order(customer, [(product, 1)])
    assert refused.status_code == 503, refused.text
    platform.start("orders")

    outcome(platform, admin, orders).assert_all_confirmed_once(len(orders))
    platform.wait_until_drained()
    assert platform.dead_letters() == 0


def test_with_the_catalog_down_orders_fail_fast_with_503_and_the_rest_of_the_shop_answers(platform, admin):
    product = stocked_product(admin)
    # Killed, not stopped: its registry entry stays until its TTL, so callers meet a dead address too.
    platform.stop("catalog", signal.SIGKILL)
    try:
        with platform.client("customer", sub=f"c-{uuid.uuid4().hex[:6]}") as customer:
            # No hang: each answer comes within the client's timeout, as a problem document.
            placed = place_order(customer, [(product, 1)])
            assert placed.status_code == 503, placed.text
            assert placed.headers["content-type"].startswith("application/problem+json")
            assert "catalog" in placed.json()["detail"]

            storefront = customer.get(f"/api/storefront/products/{product}")
            assert storefront.status_code in (502, 503), storefront.text
            assert storefront.headers["content-type"].startswith("application/problem+json")

            # What does not need the catalog still answers.
            assert customer.get("/api/orders").status_code == 200
            assert admin.get(f"/api/inventory/stock/{product}").status_code == 200
    finally:
        platform.start("catalog")

    with platform.client("customer", sub="after") as customer:
        eventually_sync(
            lambda: customer.get(f"/api/storefront/products/{product}").status_code == 200,
            timeout=30,
            what="the storefront back with the catalog",
        )
        placed = place_order(customer, [(product, 1)])
        assert placed.status_code == 201, placed.text
