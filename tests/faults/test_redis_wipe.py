"""Redis comes back without its data (a fresh server on the same port): the platform heals itself.

Consumers recreate their groups (counted), services register again and stay ready, new orders flow;
what was lost is reported, not hidden: orders whose events vanished mid-saga end cancelled by their
step deadline with the reason, their stock released and their captures refunded. An event of an
order already final (its confirmation) lost in the wipe leaves that order's reservation uncommitted:
the test counts those, and they may only be orders of before the wipe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from faults.flow import OrderFlow, final_states, outcome, stocked_product
from stack.runner import GROUPS, SERVICES, Platform, running_platform

from flotilla_kit.testing.waiting import eventually_sync

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    env = {"orders": {"SAGA_STEP_TIMEOUT_SECONDS": "5", "SWEEP_INTERVAL_SECONDS": "0.5"}}
    with running_platform(tmp_path_factory.mktemp("redis-wipe"), env=env) as platform:
        yield platform


def _all_ready(platform: Platform) -> bool:
    instances = [*platform.instances.values(), platform.gateway]
    try:
        return all(httpx.get(f"{p.base_url}/readyz", timeout=2).status_code == 200 for p in instances if p)
    except httpx.HTTPError:
        return False


def _registry(platform: Platform) -> dict[str, list[tuple[bytes, float]]]:
    """The discovery registry's expiries per service, as Redis holds them now (for a failure message)."""
    with platform.redis() as client:
        keys = client.keys("flotilla:discovery:*:expiries")
        return {key.decode(): client.zrange(key, 0, -1, withscores=True) for key in keys} | {"time": client.time()}


def _reservation_status(admin: httpx.Client, order_id: str) -> str:
    response = admin.get(f"/api/inventory/reservations/{order_id}")
    if response.status_code == 404:
        return "none"  # its OrderPlaced was lost: nothing was reserved
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_redis_without_its_data_heals_and_reports_what_was_lost(platform: Platform) -> None:
    with platform.client("admin", sub="admin-1") as admin:
        product = stocked_product(admin, units=1000)
        with OrderFlow(platform, product) as flow:
            flow.wait_accepted(15)
            platform.redis_server.restart(keep_data=False)
            wiped_at = len(flow.accepted)
            eventually_sync(lambda: _all_ready(platform), timeout=60, what="every instance ready again")
            flow.wait_accepted(wiped_at + 20)
        orders = flow.accepted[:]
        assert not flow.unanswered, flow.summary()

        # Every order ended; those whose events were lost were cancelled by their deadline, saying so.
        finals = final_states(admin, orders, timeout=120)
        reasons = Counter(o["cancel_reason"] for o in finals.values() if o["status"] == "cancelled")
        assert set(reasons) <= {"stock step timed out", "payment step timed out"}, reasons
        # Orders placed once the platform had healed went through.
        healed = orders[-10:]
        assert {finals[o]["status"] for o in healed} == {"confirmed"}, [finals[o] for o in healed]

        # Every instance registers again within a heartbeat: every service answers through the gateway.
        paths = ["/api/catalog/products", "/api/orders", "/api/notifications", f"/api/inventory/stock/{product}"]
        paths.append(f"/api/payments/{orders[0]}")
        try:
            eventually_sync(
                lambda: all(admin.get(path).status_code != 503 for path in paths), timeout=60, what="routable"
            )
        except TimeoutError:
            raise AssertionError(f"not every service routable again: {_registry(platform)}") from None

        platform.wait_until_drained()
        assert platform.dead_letters() == 0
        result = outcome(platform, admin, orders)
        assert result.effects_once(), result.events_per_order  # lost, perhaps; doubled, never
        assert result.payments["captured"] == result.states["confirmed"], result
        assert set(result.notifications) <= {0, 1}, result  # a final event lost in the wipe: no notification
        # What the wipe lost, seen from inventory: a confirmation relayed before the wipe and gone with it
        # leaves that order's reservation reserved (never committed). Only orders of before the wipe may
        # show it; inventory's levels agree with its reservations either way.
        reservations = {o: _reservation_status(admin, o) for o in orders}
        assert all(reservations[o] == "committed" for o in healed), reservations
        stuck = [o for o, status in reservations.items() if status == "reserved"]
        assert all(finals[o]["status"] == "confirmed" and o not in healed for o in stuck), (stuck, finals)
        level = admin.get(f"/api/inventory/stock/{product}").json()
        committed = sum(status == "committed" for status in reservations.values())
        assert (level["on_hand"], level["reserved"]) == (1000 - committed, len(stuck)), (level, reservations)
        print(f"lost in the wipe: {len(stuck)} confirmations, cancelled by deadline: {dict(reasons)}")

        # Every group was found missing and recreated, and that is counted; no consumer loop died.
        for stream, group in GROUPS:
            stats = platform.stats(stream, group)
            assert stats is not None and stats.recreated >= 1, (stream, group, stats)
        for service in SERVICES:
            assert platform.metric(service, "flotilla_stream_consumer_restarts_total") == 0, service
