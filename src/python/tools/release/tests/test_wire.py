"""Old consumers and new producers for real: two versions of one event, encoded by one and decoded by
the other through the streams' envelope, and the checker's verdict on the same pair.

Each version is its own class with the same name and tag, as two deployed services would hold them.
"""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec
import pytest
from release.compat import BACKWARD, BOTH, FORWARD, compare
from release.schemas import build_document

from flotilla_contracts.events import Event
from flotilla_streams.envelope import PayloadDecoder, UndecodableEntry, decode, encode, wrap


def order_confirmed_v1() -> type[Event]:
    class OrderConfirmed(Event, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
        order_id: uuid.UUID
        customer_id: str
        total: int

    return OrderConfirmed


def order_confirmed_v2_compatible() -> type[Event]:
    class OrderConfirmed(Event, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
        schema_version = 2
        order_id: uuid.UUID
        customer_id: str
        total: int
        gift_note: str = ""  # the compatible way: a new field with a default

    return OrderConfirmed


def order_confirmed_v2_required() -> type[Event]:
    class OrderConfirmed(Event, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
        order_id: uuid.UUID
        customer_id: str
        total: int
        channel: str  # required: old events do not have it

    return OrderConfirmed


def order_confirmed_v2_string_total() -> type[Event]:
    class OrderConfirmed(Event, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
        order_id: uuid.UUID
        customer_id: str
        total: str  # int -> str

    return OrderConfirmed


def order_status(values: tuple[str, ...]) -> type[Event]:
    # defstruct: the Literal is built at run time (a class body's annotations resolve at module level).
    cls = msgspec.defstruct(
        "OrderStatusChanged",
        [("order_id", uuid.UUID), ("status", Literal[values])],
        bases=(Event,),
        tag="orders.OrderStatusChanged",
        kw_only=True,
        frozen=True,
    )
    return cls  # type: ignore[return-value]


def through_the_stream(event: Event, reader: type[Event]) -> Event:
    """What a consumer on ``reader``'s version gets from a producer that published ``event``."""
    entry = encode(wrap(event, source="orders"))
    return PayloadDecoder([reader]).decode(decode(entry))


def verdict(old: type[Event], new: type[Event]) -> list[tuple[str | None, str, frozenset[str]]]:
    changes = compare(build_document([old], lib="demo"), build_document([new], lib="demo"))
    return [(c.field, c.rule, c.breaks) for c in changes]


ORDER = uuid.UUID(int=7)


def test_compatible_v2_old_consumer_reads_new_events_and_new_consumer_reads_old_ones() -> None:
    v1, v2 = order_confirmed_v1(), order_confirmed_v2_compatible()
    # Forward: a consumer still on v1 reads what an upgraded producer publishes (gift_note ignored).
    read_by_old = through_the_stream(v2(order_id=ORDER, customer_id="c1", total=500, gift_note="hi"), v1)
    assert read_by_old == v1(order_id=ORDER, customer_id="c1", total=500)
    # Backward: an upgraded consumer reads the v1 events still in the stream (gift_note defaulted).
    read_by_new = through_the_stream(v1(order_id=ORDER, customer_id="c1", total=500), v2)
    assert read_by_new == v2(order_id=ORDER, customer_id="c1", total=500, gift_note="")
    # The envelope carries each producer's schema_version.
    assert decode(encode(wrap(v2(order_id=ORDER, customer_id="c1", total=1), source="orders"))).version == 2
    # The checker agrees: compatible both ways, a minor bump.
    assert verdict(v1, v2) == [
        (None, "EVENT_VERSION_CHANGED", frozenset()),
        ("gift_note", "FIELD_ADDED_OPTIONAL", frozenset()),
    ]


def test_new_required_field_new_consumer_fails_on_old_events_and_the_checker_says_backward() -> None:
    v1, v2 = order_confirmed_v1(), order_confirmed_v2_required()
    with pytest.raises(UndecodableEntry, match="channel"):
        through_the_stream(v1(order_id=ORDER, customer_id="c1", total=500), v2)
    # The other direction works: the old consumer ignores the new field.
    assert through_the_stream(v2(order_id=ORDER, customer_id="c1", total=5, channel="web"), v1).total == 5  # type: ignore[attr-defined]
    assert verdict(v1, v2) == [("channel", "FIELD_ADDED_REQUIRED", frozenset({BACKWARD}))]


def test_widened_literal_old_consumer_fails_on_new_events_and_the_checker_says_forward() -> None:
    v1, v2 = order_status(("placed", "confirmed")), order_status(("placed", "confirmed", "shipped"))
    with pytest.raises(UndecodableEntry, match="status"):
        through_the_stream(v2(order_id=ORDER, status="shipped"), v1)
    assert through_the_stream(v1(order_id=ORDER, status="placed"), v2).status == "placed"  # type: ignore[attr-defined]
    assert verdict(v1, v2) == [("status", "ENUM_WIDENED", frozenset({FORWARD}))]


def test_int_to_str_fails_both_ways_and_the_checker_says_both() -> None:
    v1, v2 = order_confirmed_v1(), order_confirmed_v2_string_total()
    with pytest.raises(UndecodableEntry):
        through_the_stream(v2(order_id=ORDER, customer_id="c1", total="5.00"), v1)
    with pytest.raises(UndecodableEntry):
        through_the_stream(v1(order_id=ORDER, customer_id="c1", total=500), v2)
    assert verdict(v1, v2) == [("total", "TYPE_CHANGED", BOTH)]


def test_plain_msgspec_round_trip_matches_the_envelope_results() -> None:
    # The same facts without the envelope: msgspec ignores unknown fields and fills defaults.
    v1, v2 = order_confirmed_v1(), order_confirmed_v2_compatible()
    new_bytes = msgspec.json.encode(v2(order_id=ORDER, customer_id="c", total=1, gift_note="x"))
    assert msgspec.json.decode(new_bytes, type=v1) == v1(order_id=ORDER, customer_id="c", total=1)
    old_bytes = msgspec.json.encode(v1(order_id=ORDER, customer_id="c", total=1))
    assert msgspec.json.decode(old_bytes, type=v2).gift_note == ""  # type: ignore[attr-defined]
