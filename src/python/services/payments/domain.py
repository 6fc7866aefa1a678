"""Payments rules: what an event does to an order's one payment. Pure functions, no I/O.

Events of orders.events arrive at least once and, across the saga, in any order (a cancellation
can overtake the payment request it follows). The inbox drops an exact redelivery; these rules
make every other repetition harmless, from the state of the order's payment row alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from flotilla_contracts.catalog import Money
from flotilla_contracts.payments import PaymentStatus

ORDER_CANCELLED = "order cancelled"
# What a payment recorded before any request holds as its amount: ISO 4217's "no currency".
NO_AMOUNT = Money(0, "XXX")


@dataclass(frozen=True)
class Existing:
    """The order's payment row, as far as the rules care."""

    status: PaymentStatus
    answered: bool  # a PaymentRequested for the order was answered already


class OnRequest(enum.Enum):
    CALL_PROVIDER = "call the provider, record its decision and publish it"
    DECLINE_CANCELLED = "answer PaymentDeclined('order cancelled'), capturing nothing"
    NOTHING = "nothing: the order's payment was answered already"


class OnCancel(enum.Enum):
    REFUND = "refund the capture and publish PaymentRefunded"
    RECORD_CANCELLED = "record a cancelled payment, so that a later request captures nothing"
    NOTHING = "nothing: nothing was captured, or it was given back already"


def on_payment_requested(existing: Existing | None) -> OnRequest:
    """A request for an order captures at most once, and never after the order was cancelled."""
    if existing is None:
        return OnRequest.CALL_PROVIDER
    if existing.status == "cancelled" and not existing.answered:
        return OnRequest.DECLINE_CANCELLED
    return OnRequest.NOTHING


def on_order_cancelled(existing: Existing | None) -> OnCancel:
    """A cancelled order gets its capture back, or a marker that refuses a request still on its way."""
    if existing is None:
        return OnCancel.RECORD_CANCELLED
    if existing.status == "captured":
        return OnCancel.REFUND
    return OnCancel.NOTHING


def cancellation_reason(order_reason: str) -> str:
    """The reason a payment row records for its order's cancellation."""
    return f"{ORDER_CANCELLED}: {order_reason}" if order_reason else ORDER_CANCELLED
