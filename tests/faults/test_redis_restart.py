"""Redis restarted under load with its append-only file: no event lost, the outbox relays catch up.

Real processes (stack.runner): Redis with AOF, every service, the gateway. Orders flow through the
gateway while Redis stops and starts again on its port; every order accepted is confirmed, once.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faults.flow import OrderFlow, outcome, stocked_product
from stack.runner import SERVICES, Platform, running_platform

from flotilla_kit.testing.waiting import eventually_sync

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PUBLISHERS = ("catalog", "inventory", "orders", "payments")  # the services with an outbox


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("redis-restart")) as platform:
        yield platform


def test_redis_restarted_with_its_data_under_load_loses_no_event(platform: Platform) -> None:
    with platform.client("admin", sub="admin-1") as admin:
        product = stocked_product(admin)
        with OrderFlow(platform, product) as flow:
            flow.wait_accepted(15)
            platform.redis_server.restart()  # SIGTERM: Redis writes its AOF out, then starts from it
            flow.wait_accepted(len(flow.accepted) + 20)
        orders = flow.accepted[:]

        # An order refused during the outage has a problem document (counted); none is left unanswered.
        assert not flow.unanswered, flow.summary()
        outcome(platform, admin, orders).assert_all_confirmed_once(len(orders))
        platform.wait_until_drained()
        assert platform.dead_letters() == 0
        eventually_sync(
            lambda: all(platform.metric(s, "flotilla_outbox_backlog") == 0 for s in PUBLISHERS),
            timeout=30,
            what="every outbox relayed",
        )
        # The consumers rode the outage out: their loops never died.
        for service in SERVICES:
            assert platform.metric(service, "flotilla_stream_consumer_restarts_total") == 0, service
