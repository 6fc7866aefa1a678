"""Consumer services with two replicas each: they share the load, one can stop, one can be killed.

Real processes (stack.runner): Redis, every service, the gateway; orders flow through the gateway
while the test stops or kills instances. Each test states its invariant as counts: orders by final
state, reservations, payments, notifications, distinct events per order, pending and dead letters.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from faults.flow import OrderFlow, outcome, stocked_product
from stack.runner import Platform, running_platform

from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_kit.testing.waiting import eventually_sync

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONSUMERS = ("inventory", "payments", "notifications")
# A dead consumer's pending entries are taken over after 2 s (production: 30 s); payments takes
# 100 ms per capture, so that it holds entries pending while orders flow.
_ENV = {service: {"STREAM_CLAIM_IDLE_SECONDS": "2"} for service in (*CONSUMERS, "orders")}
_ENV["payments"]["PROVIDER_LATENCY_MS"] = "100"


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("replicas"), env=_ENV) as platform:
        yield platform


@pytest.fixture
def replicated(platform: Platform) -> Platform:
    """The platform with a second instance of each consumer service (started again if a test stopped it)."""
    for service in CONSUMERS:
        if f"{service}-2" not in platform.instances:
            platform.start(service, f"{service}-2")
    return platform


@pytest.fixture(scope="module")
def admin(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client("admin", sub="admin-1") as client:
        yield client


def _acked(platform: Platform, instance: str, group: str) -> float:
    return platform.metric(instance, "flotilla_stream_acked_total", stream=ORDERS_EVENTS, group=group)


def _pending_at(platform: Platform, group: str, consumer: str) -> int:
    with platform.redis() as client:
        summary = client.xpending(ORDERS_EVENTS, group)
    return sum(int(c["pending"]) for c in summary["consumers"] if c["name"] == consumer.encode())


def test_two_replicas_of_each_consumer_service_share_the_load_and_either_can_stop(replicated, admin):
    platform = replicated
    product = stocked_product(admin)

    with OrderFlow(platform, product) as flow:
        flow.wait_accepted(40)
    both = flow.accepted[:]
    # Each replica of each consumer service has handled orders' events.
    for service in CONSUMERS:
        for instance in (service, f"{service}-2"):
            assert _acked(platform, instance, service) > 0, f"{instance} consumed nothing"

    for service in CONSUMERS:
        platform.stop(f"{service}-2")
    with OrderFlow(platform, product) as flow:
        flow.wait_accepted(20)
    alone = flow.accepted[:]

    outcome(platform, admin, both + alone).assert_all_confirmed_once(len(both + alone))
    assert not flow.unanswered and not flow.refused, flow.summary()
    platform.wait_until_drained()
    assert platform.dead_letters() == 0


def test_a_consumer_instance_killed_mid_flow_loses_nothing_and_doubles_nothing(replicated, admin):
    platform = replicated
    product = stocked_product(admin)
    level_before = admin.get(f"/api/inventory/stock/{product}").json()

    with OrderFlow(platform, product) as flow:
        # Kill -9 payments-2 while it holds orders' payment requests it has not answered yet, and
        # inventory-2 at the same moment: their pending entries must be taken over by the survivors.
        eventually_sync(
            lambda: _pending_at(platform, "payments", "payments-2") > 0,
            timeout=60,
            interval=0.01,
            what="payments-2 holding pending entries",
        )
        platform.stop("payments-2", signal.SIGKILL)
        platform.stop("inventory-2", signal.SIGKILL)
        killed_at = len(flow.accepted)
        flow.wait_accepted(killed_at + 20)
    orders = flow.accepted[:]

    outcome(platform, admin, orders).assert_all_confirmed_once(len(orders))
    assert not flow.unanswered and not flow.refused, flow.summary()
    platform.wait_until_drained()  # the dead consumers' entries were reclaimed and handled
    assert platform.dead_letters() == 0
    reclaimed = platform.stats(ORDERS_EVENTS, "payments")
    assert reclaimed is not None and reclaimed.reclaimed > 0, reclaimed
    level = admin.get(f"/api/inventory/stock/{product}").json()
    assert (level["on_hand"], level["reserved"]) == (level_before["on_hand"] - len(orders), 0)
