"""The inventory's consumer: real envelopes published into a real Redis, effects read back through
the API and the inventory's own stream, on SQLite and PostgreSQL."""

import uuid

import msgspec
import pytest

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import (
    CATALOG_EVENTS,
    INVENTORY_EVENTS,
    ORDERS_EVENTS,
    ProductCreated,
    ProductDeactivated,
    ProductPriceChanged,
    Shortage,
    StockRejected,
    StockReserved,
)
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.envelope import ENVELOPE_FIELD, decode
from inventory.tests.conftest import ADMIN, order_cancelled, order_confirmed, order_placed, publish

_answers = msgspec.json.Decoder(StockReserved | StockRejected)


def _answered(streams):
    """The inventory's events so far, with their envelopes."""
    envelopes = [decode(fields[ENVELOPE_FIELD]) for _, fields in streams.xrange(INVENTORY_EVENTS)]
    return [(envelope, _answers.decode(envelope.payload)) for envelope in envelopes]


def _answers_for(streams, order_id):
    return [event for _, event in _answered(streams) if event.order_id == order_id]


def _stock(client, product):
    return client.get(f"/stock/{product}").json()


def _reservation(client, order_id):
    response = client.get(f"/reservations/{order_id}", headers=ADMIN)
    return response.json() if response.status_code == 200 else None


def _set(client, product, on_hand):
    assert (
        client.put(f"/stock/{product}", json={"on_hand": on_hand, "reason": "count"}, headers=ADMIN).status_code == 200
    )


def _place(client, streams, *lines, order_id=None):
    """Publish an OrderPlaced and wait for the inventory's answer to it."""
    event = order_placed(*lines, order_id=order_id)
    publish(streams, ORDERS_EVENTS, event)
    eventually_sync(lambda: _answers_for(streams, event.order_id), what="an answer to OrderPlaced")
    return event


def _handled_up_to_here(client, streams):
    """Wait until everything published on ORDERS_EVENTS so far is handled: the consumer handles a
    stream in order, so once a marker order published now is answered, all before it are done."""
    marker = uuid.uuid4()
    _place(client, streams, (uuid.uuid4(), 1), order_id=marker)


def test_a_product_created_in_the_catalog_gets_a_stock_row_with_nothing_on_hand(client, streams):
    product = uuid.uuid4()
    created = ProductCreated(
        product_id=product, sku="TEA-1", name="Tea", price=Money(450, "EUR"), active=True, version=1
    )
    publish(streams, CATALOG_EVENTS, created)
    eventually_sync(lambda: client.get(f"/stock/{product}").status_code == 200, what="a stock row")
    assert _stock(client, product) == {"product_id": str(product), "available": 0, "on_hand": 0, "reserved": 0}


def test_a_product_created_again_keeps_the_stock_it_has(client, streams):
    product = uuid.uuid4()
    _set(client, product, 4)
    created = ProductCreated(
        product_id=product, sku="TEA-1", name="Tea", price=Money(450, "EUR"), active=True, version=1
    )
    envelope = publish(streams, CATALOG_EVENTS, created)
    publish(streams, CATALOG_EVENTS, created, envelope=envelope)  # redelivered
    publish(streams, CATALOG_EVENTS, created)  # the same event sent again, under a new id
    marker = uuid.uuid4()
    publish(streams, CATALOG_EVENTS, msgspec.structs.replace(created, product_id=marker))
    eventually_sync(lambda: client.get(f"/stock/{marker}").status_code == 200, what="the marker's stock row")
    assert _stock(client, product)["on_hand"] == 4


def test_price_changes_and_deactivations_leave_the_stock_as_it_is(client, streams):
    product = uuid.uuid4()
    _set(client, product, 4)
    publish(
        streams,
        CATALOG_EVENTS,
        ProductPriceChanged(
            product_id=product, sku="TEA-1", price=Money(500, "EUR"), previous_price=Money(450, "EUR"), version=2
        ),
    )
    publish(streams, CATALOG_EVENTS, ProductDeactivated(product_id=product, sku="TEA-1", version=3))
    marker = uuid.uuid4()
    created = ProductCreated(product_id=marker, sku="M", name="M", price=Money(1, "EUR"), active=True, version=1)
    publish(streams, CATALOG_EVENTS, created)
    eventually_sync(lambda: client.get(f"/stock/{marker}").status_code == 200, what="the marker's stock row")
    assert _stock(client, product) == {"product_id": str(product), "available": 4, "on_hand": 4, "reserved": 0}
    assert streams.xpending(CATALOG_EVENTS, "inventory")["pending"] == 0  # acked, not left for a retry


def test_an_order_with_enough_stock_is_reserved_whole_and_answered_stock_reserved(client, streams):
    tea, mug = uuid.uuid4(), uuid.uuid4()
    _set(client, tea, 5)
    _set(client, mug, 3)
    placed = order_placed((tea, 2), (mug, 1), (tea, 1))
    envelope = publish(streams, ORDERS_EVENTS, placed)
    eventually_sync(lambda: _answers_for(streams, placed.order_id), what="StockReserved")
    [(answer_envelope, answer)] = [(e, a) for e, a in _answered(streams) if a.order_id == placed.order_id]
    assert answer == StockReserved(order_id=placed.order_id)
    assert answer_envelope.causation_id == envelope.id and answer_envelope.correlation_id == envelope.correlation_id
    assert answer_envelope.source == "inventory"
    assert _stock(client, tea) == {"product_id": str(tea), "available": 2, "on_hand": 5, "reserved": 3}
    assert _stock(client, mug)["reserved"] == 1
    reservation = _reservation(client, placed.order_id)
    assert reservation["status"] == "reserved"
    assert sorted((line["product_id"], line["quantity"]) for line in reservation["lines"]) == sorted(
        [(str(tea), 3), (str(mug), 1)]
    )


def test_an_order_short_of_any_product_reserves_nothing_and_is_rejected_with_its_shortages(client, streams):
    tea, mug, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    _set(client, tea, 5)
    _set(client, mug, 1)
    placed = _place(client, streams, (tea, 2), (mug, 2), (unknown, 1))
    [answer] = _answers_for(streams, placed.order_id)
    assert isinstance(answer, StockRejected)
    assert sorted(answer.shortages, key=lambda s: s.product_id) == sorted(
        [Shortage(product_id=mug, requested=2, available=1), Shortage(product_id=unknown, requested=1, available=0)],
        key=lambda s: s.product_id,
    )
    assert _stock(client, tea)["reserved"] == 0 and _stock(client, mug)["reserved"] == 0
    reservation = _reservation(client, placed.order_id)
    assert reservation["status"] == "rejected" and reservation["lines"] == []
    assert "insufficient stock" in reservation["reason"]


def test_redelivering_an_order_placed_reserves_once_and_answers_once(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    placed = order_placed((tea, 4))
    envelope = publish(streams, ORDERS_EVENTS, placed)
    publish(streams, ORDERS_EVENTS, placed, envelope=envelope)  # the same event id again
    publish(streams, ORDERS_EVENTS, placed)  # the same order again, under a new event id
    _handled_up_to_here(client, streams)
    assert _stock(client, tea)["reserved"] == 4
    assert _answers_for(streams, placed.order_id) == [StockReserved(order_id=placed.order_id)]


def test_a_cancelled_order_gives_its_units_back(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    placed = _place(client, streams, (tea, 4))
    publish(streams, ORDERS_EVENTS, order_cancelled(placed.order_id, "payment declined"))
    eventually_sync(lambda: _reservation(client, placed.order_id)["status"] == "released", what="release")
    assert _stock(client, tea) == {"product_id": str(tea), "available": 10, "on_hand": 10, "reserved": 0}
    reservation = _reservation(client, placed.order_id)
    assert reservation["reason"] == "order cancelled: payment declined"
    assert reservation["lines"] == [{"product_id": str(tea), "quantity": 4}]  # what it held


def test_cancelling_twice_releases_once(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    first = _place(client, streams, (tea, 4))
    _place(client, streams, (tea, 3))  # another order, whose units stay held
    cancel = publish(streams, ORDERS_EVENTS, order_cancelled(first.order_id))
    publish(streams, ORDERS_EVENTS, order_cancelled(first.order_id), envelope=cancel)
    publish(streams, ORDERS_EVENTS, order_cancelled(first.order_id))
    _handled_up_to_here(client, streams)
    assert _stock(client, tea)["reserved"] == 3  # the second order's units stay held


def test_an_order_cancelled_before_it_arrived_is_never_reserved(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    order_id = uuid.uuid4()
    publish(streams, ORDERS_EVENTS, order_cancelled(order_id, "deadline passed"))
    eventually_sync(lambda: _reservation(client, order_id) is not None, what="a tombstone")
    tombstone = _reservation(client, order_id)
    assert tombstone["status"] == "released" and tombstone["lines"] == []
    assert tombstone["reason"] == "cancelled before reservation"
    publish(streams, ORDERS_EVENTS, order_placed((tea, 4), order_id=order_id))  # the late OrderPlaced
    _handled_up_to_here(client, streams)
    assert _stock(client, tea)["reserved"] == 0
    assert _answers_for(streams, order_id) == []
    assert _reservation(client, order_id) == tombstone


def test_a_confirmed_order_takes_its_units_off_the_stock_as_movements(client, streams):
    tea, mug = uuid.uuid4(), uuid.uuid4()
    _set(client, tea, 10)
    _set(client, mug, 2)
    placed = _place(client, streams, (tea, 4), (mug, 2))
    publish(streams, ORDERS_EVENTS, order_confirmed(placed.order_id))
    eventually_sync(lambda: _reservation(client, placed.order_id)["status"] == "committed", what="commit")
    assert _stock(client, tea) == {"product_id": str(tea), "available": 6, "on_hand": 6, "reserved": 0}
    assert _stock(client, mug) == {"product_id": str(mug), "available": 0, "on_hand": 0, "reserved": 0}
    latest = client.get(f"/stock/{tea}/movements", headers=ADMIN).json()["items"][0]
    assert (latest["delta"], latest["on_hand_after"]) == (-4, 6)
    assert latest["order_id"] == str(placed.order_id) and latest["reason"] == f"order {placed.order_id}"


def test_a_confirmation_again_or_a_cancellation_after_it_changes_nothing(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    placed = _place(client, streams, (tea, 4))
    confirm = publish(streams, ORDERS_EVENTS, order_confirmed(placed.order_id))
    publish(streams, ORDERS_EVENTS, order_confirmed(placed.order_id), envelope=confirm)
    publish(streams, ORDERS_EVENTS, order_confirmed(placed.order_id))
    publish(streams, ORDERS_EVENTS, order_cancelled(placed.order_id))
    _handled_up_to_here(client, streams)
    assert _stock(client, tea) == {"product_id": str(tea), "available": 6, "on_hand": 6, "reserved": 0}
    assert _reservation(client, placed.order_id)["status"] == "committed"
    assert len(client.get(f"/stock/{tea}/movements", headers=ADMIN).json()["items"]) == 2  # the count, one commit


@pytest.mark.parametrize("then", ["confirmed", "cancelled"])
def test_a_rejected_order_stays_rejected(client, streams, then):
    tea = uuid.uuid4()
    _set(client, tea, 1)
    placed = _place(client, streams, (tea, 2))
    follow_up = order_confirmed(placed.order_id) if then == "confirmed" else order_cancelled(placed.order_id)
    publish(streams, ORDERS_EVENTS, follow_up)
    _handled_up_to_here(client, streams)
    assert _reservation(client, placed.order_id)["status"] == "rejected"
    assert _stock(client, tea) == {"product_id": str(tea), "available": 1, "on_hand": 1, "reserved": 0}


def test_stock_held_for_orders_cannot_be_counted_away(client, streams):
    tea = uuid.uuid4()
    _set(client, tea, 10)
    _place(client, streams, (tea, 6))
    response = client.put(f"/stock/{tea}", json={"on_hand": 5, "reason": "recount"}, headers=ADMIN)
    assert response.status_code == 409 and "6 units are reserved" in response.json()["detail"]
    response = client.post(f"/stock/{tea}/adjustments", json={"delta": -5, "reason": "broken"}, headers=ADMIN)
    assert response.status_code == 409 and "below the 6 reserved" in response.json()["detail"]
    assert client.put(f"/stock/{tea}", json={"on_hand": 6, "reason": "recount"}, headers=ADMIN).json()["available"] == 0
