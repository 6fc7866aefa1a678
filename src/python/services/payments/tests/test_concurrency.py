"""Two payments instances on one database, each order asked twice at once: one capture per order."""

import collections
import dataclasses
import uuid

import sqlalchemy as sa

from flotilla_contracts.events import PAYMENTS_EVENTS, PaymentCaptured
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from payments.models import Payment
from payments.tests.conftest import FAST, database_of, publish, requested, running, settled

ORDERS = 20


async def test_two_instances_on_one_database_capture_each_order_once(make_settings, database_url, redis):
    # One entry per read, and a provider slow enough that both instances are inside it for one order.
    options = dataclasses.replace(FAST, batch_size=1)
    first = make_settings(database_url, instance_id="payments-a", provider_latency_ms=20)
    second = make_settings(database_url, instance_id="payments-b", provider_latency_ms=20)
    async with running(first, options) as (app_a, _), running(second, options) as (app_b, _):
        orders = [uuid.uuid4() for _ in range(ORDERS)]
        for order_id in orders:
            # Two requests of one order under two event ids, next to each other: the inbox does not
            # tell them apart, only the order's one payment row does.
            await publish(redis, requested(order_id))
            await publish(redis, requested(order_id))
        await settled(app_a, redis)

        async with database_of(app_a) as db:
            rows = await db.fetch_all(sa.select(Payment.__table__.c.order_id, Payment.__table__.c.status))
        assert sorted(order_id for order_id, _ in rows) == sorted(orders)
        assert {status for _, status in rows} == {"captured"}
        captured_ids = collections.defaultdict(set)
        for _, fields in await redis.xrange(PAYMENTS_EVENTS):
            envelope = decode(fields[ENVELOPE_FIELD])
            assert envelope.type == "payments.PaymentCaptured"
            event = decode_captured(envelope)
            captured_ids[event.order_id].add(envelope.id)
        assert {order_id: len(ids) for order_id, ids in captured_ids.items()} == dict.fromkeys(orders, 1)
        attempts = app_a.state.provider.attempts + app_b.state.provider.attempts
        if database_url.startswith("postgresql"):
            # Both instances asked the provider for some order at once (SQLite's single writer
            # serialises the handlers instead): the unique order_id turned the second away.
            assert attempts > ORDERS
    assert await redis.xlen("orders.events.dlq") == 0


def decode_captured(envelope) -> PaymentCaptured:
    import msgspec

    return msgspec.json.decode(envelope.payload, type=PaymentCaptured)
