"""Notification rules without I/O: the messages (who may read what: flotilla_kit.identity, its tests)."""

import uuid

import pytest

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import OrderCancelled, OrderConfirmed
from notifications import domain

ORDER = uuid.UUID("6f1c1f9e-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    "money, shown",
    [
        (Money(1250, "EUR"), "12.50 EUR"),
        (Money(5, "USD"), "0.05 USD"),
        (Money(0, "EUR"), "0.00 EUR"),
        (Money(1250, "JPY"), "1250 JPY"),
        (Money(12345, "KWD"), "12.345 KWD"),
    ],
)
def test_amounts_are_shown_in_the_currencys_major_unit(money, shown):
    assert domain.format_money(money) == shown


def test_a_confirmation_tells_the_total():
    event = OrderConfirmed(order_id=ORDER, customer_id="c-1", total=Money(2599, "EUR"))
    assert domain.notification_for(event) == domain.NewNotification(
        kind="order_confirmed", message=f"Your order {ORDER} is confirmed. Total: 25.99 EUR."
    )


def test_a_cancellation_tells_the_reason():
    event = OrderCancelled(order_id=ORDER, customer_id="c-1", reason="payment declined: card declined.")
    assert domain.notification_for(event) == domain.NewNotification(
        kind="order_cancelled", message=f"Your order {ORDER} was cancelled: payment declined: card declined."
    )


def test_a_cancellation_without_a_reason_still_reads_well():
    event = OrderCancelled(order_id=ORDER, customer_id="c-1", reason=" ")
    assert domain.notification_for(event).message == f"Your order {ORDER} was cancelled."
