"""payments_client against payments served as a real process, over loopback."""

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.resolver import StaticResolver
from flotilla_http.client import HttpClient
from flotilla_kit.testing.processes import ServiceProcess, running_service
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.factory import create_redis
from payments.tests.conftest import ADMIN, publish, requested
from payments_client import NotFoundError, PaymentsClient, ServiceCallError


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory) -> Iterator[ServiceProcess]:
    with running_service(
        "payments",
        redis_url=redis_server.url,
        data_dir=tmp_path_factory.mktemp("payments"),
        env={"INSTANCE_ID": "payments-client-test"},
    ) as process:
        yield process


@pytest.fixture
async def payments(service) -> AsyncIterator[PaymentsClient]:
    async with HttpClient(Balancer(StaticResolver({"payments": [service.base_url]}))) as http:
        yield PaymentsClient(http)


@pytest.fixture
async def orders_stream(redis_server):
    client = create_redis(redis_server.url)  # no flush: the service's consumer group lives there
    yield client
    await client.aclose()


async def test_the_client_reads_a_captured_payment_and_pages_through_captures(payments, orders_stream):
    orders = [uuid.uuid4() for _ in range(3)]
    for order_id in orders:
        await publish(orders_stream, requested(order_id, amount=1200))

    async def captured() -> bool:
        page = await payments.list_payments(status="captured", limit=100, headers=ADMIN)
        return {p.order_id for p in page.items} >= set(orders)

    await eventually(captured, what="the three payments captured")
    payment = await payments.get_payment(orders[0], headers=ADMIN)
    assert payment.order_id == orders[0] and payment.status == "captured" and payment.amount.amount == 1200

    seen, cursor = [], None
    while True:
        page = await payments.list_payments(status="captured", cursor=cursor, limit=2, headers=ADMIN)
        seen += [p.order_id for p in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert set(orders) <= set(seen) and len(seen) == len(set(seen))


async def test_the_client_raises_not_found_for_an_order_without_a_payment(payments):
    with pytest.raises(NotFoundError):
        await payments.get_payment(uuid.uuid4(), headers=ADMIN)


async def test_the_client_raises_the_problem_of_a_caller_who_is_not_an_admin(payments):
    with pytest.raises(ServiceCallError) as raised:
        await payments.list_payments(headers={"x-caller-id": "c-1", "x-caller-roles": "customer"})
    assert raised.value.status == 403
