"""notifications_client against notifications served as a real process, over loopback."""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.resolver import StaticResolver
from flotilla_http.client import HttpClient
from flotilla_kit.testing.processes import ServiceProcess, running_service
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.factory import create_redis
from notifications.tests.conftest import ADMIN, cancelled, confirmed, customer, publish
from notifications_client import NotificationsClient, ServiceCallError


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[ServiceProcess]:
    with running_service(
        "notifications",
        redis_url=redis_server.url,
        data_dir=tmp_path_factory.mktemp("notifications"),
        env={"INSTANCE_ID": "notifications-client-test"},
    ) as process:
        yield process


@pytest.fixture
async def notifications(service) -> AsyncIterator[NotificationsClient]:
    async with HttpClient(Balancer(StaticResolver({"notifications": [service.base_url]}))) as http:
        yield NotificationsClient(http)


@pytest.fixture
async def orders_stream(redis_server):
    client = create_redis(redis_server.url)  # no flush: the service's consumer group lives there
    yield client
    await client.aclose()


async def test_the_client_lists_a_customers_notifications_a_page_at_a_time(notifications, orders_stream):
    customer_id = f"c-{uuid.uuid4().hex[:8]}"
    orders = [uuid.uuid4() for _ in range(3)]
    for order_id in orders:
        await publish(orders_stream, confirmed(order_id, customer_id=customer_id))
    await publish(orders_stream, cancelled(uuid.uuid4(), customer_id="someone-else"))

    async def told() -> bool:
        page = await notifications.list_notifications(customer_id=customer_id, limit=100, headers=ADMIN)
        return len(page.items) == 3

    await eventually(told, what="three notifications recorded")
    seen, cursor = [], None
    while True:
        page = await notifications.list_notifications(cursor=cursor, limit=2, headers=customer(customer_id))
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(n.order_id for n in seen) == sorted(orders)
    assert {(n.customer_id, n.kind) for n in seen} == {(customer_id, "order_confirmed")}
    [one] = (await notifications.list_notifications(order_id=orders[1], headers=ADMIN)).items
    assert one.order_id == orders[1] and "is confirmed" in one.message


async def test_the_client_raises_the_problem_of_a_caller_without_identity(notifications):
    with pytest.raises(ServiceCallError) as raised:
        await notifications.list_notifications()
    assert raised.value.status == 401
