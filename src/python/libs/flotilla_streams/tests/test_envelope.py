"""Envelope and payload encoding, and schema evolution, checked by property."""

import uuid

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import Event, OrderLine, OrderPlaced, ProductCreated
from flotilla_http.context import TraceContext, request_id_var, trace_var
from flotilla_streams.envelope import PayloadDecoder, UndecodableEntry, decode, encode, wrap

money = st.builds(Money, amount=st.integers(0, 10**12), currency=st.sampled_from(["EUR", "USD", "JPY"]))
lines = st.lists(
    st.builds(
        OrderLine,
        product_id=st.uuids(),
        sku=st.text(min_size=1, max_size=64),
        quantity=st.integers(1, 1000),
        unit_price=money,
    ),
    max_size=5,
)
orders = st.builds(OrderPlaced, order_id=st.uuids(), customer_id=st.text(max_size=40), lines=lines, total=money)


class OrderPlacedV2(Event, frozen=True, kw_only=True, tag="orders.OrderPlaced"):
    """A newer producer's OrderPlaced: one optional field more."""

    order_id: uuid.UUID
    customer_id: str
    lines: list[OrderLine]
    total: Money
    coupon: str | None = None


@given(orders, st.text(min_size=1, max_size=30))
def test_an_envelope_round_trips(event, source):
    envelope = wrap(event, source=source)
    decoded = decode(encode(envelope))
    assert decoded == envelope
    assert PayloadDecoder([OrderPlaced, ProductCreated]).decode(decoded) == event


@given(orders, st.one_of(st.none(), st.text(max_size=20)))
def test_an_old_consumer_reads_a_newer_producers_event(event, coupon):
    newer = OrderPlacedV2(
        order_id=event.order_id, customer_id=event.customer_id, lines=event.lines, total=event.total, coupon=coupon
    )
    decoded = PayloadDecoder([OrderPlaced]).decode(decode(encode(wrap(newer, source="orders"))))
    assert decoded == event


@given(orders)
def test_a_new_consumer_reads_an_older_producers_event(event):
    decoded = PayloadDecoder([OrderPlacedV2]).decode(decode(encode(wrap(event, source="orders"))))
    assert decoded.coupon is None and decoded.order_id == event.order_id


def test_the_envelope_carries_type_ids_and_the_current_trace():
    trace = TraceContext("a" * 32, "b" * 16)
    request_token, trace_token = request_id_var.set("req-7"), trace_var.set(trace)
    try:
        envelope = wrap(
            OrderPlaced(order_id=uuid.uuid4(), customer_id="c", lines=[], total=Money(0, "EUR")), source="orders"
        )
    finally:
        request_id_var.reset(request_token)
        trace_var.reset(trace_token)
    assert envelope.type == "orders.OrderPlaced" and envelope.version == 1
    assert envelope.correlation_id == "req-7"
    assert envelope.traceparent == trace.traceparent
    assert envelope.causation_id is None
    follow_up = wrap(
        ProductCreated(product_id=uuid.uuid4(), sku="A", name="n", price=Money(1, "EUR"), active=True, version=1),
        source="x",
        causation=envelope,
    )
    assert follow_up.causation_id == envelope.id
    assert follow_up.correlation_id == "req-7"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b'{"id": "x"}',
        b'{"id":1,"type":"t","version":1,"occurred_at":"2026-01-01T00:00:00Z","source":"s","correlation_id":"c"}',
    ],
)
def test_bad_envelopes_are_undecodable_with_a_reason(data):
    with pytest.raises(UndecodableEntry, match="not a valid envelope"):
        decode(data)


def test_a_payload_that_does_not_fit_its_type_is_undecodable():
    envelope = wrap(OrderPlaced(order_id=uuid.uuid4(), customer_id="c", lines=[], total=Money(0, "EUR")), source="o")
    broken = msgspec.structs.replace(envelope, payload=msgspec.Raw(b'{"type":"orders.OrderPlaced","order_id":"nope"}'))
    with pytest.raises(UndecodableEntry, match="does not fit"):
        PayloadDecoder([OrderPlaced]).decode(broken)
