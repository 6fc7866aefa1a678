"""Payments rules without I/O: what each event does to an order's payment, whatever came before."""

import pytest

from payments import domain
from payments.domain import Existing, OnCancel, OnRequest


def test_a_request_for_an_order_without_a_payment_asks_the_provider():
    assert domain.on_payment_requested(None) is OnRequest.CALL_PROVIDER


@pytest.mark.parametrize("status", ["captured", "declined", "refunded"])
def test_a_request_for_an_answered_order_does_nothing(status):
    assert domain.on_payment_requested(Existing(status=status, answered=True)) is OnRequest.NOTHING


def test_a_request_after_the_cancellation_is_declined_once_and_never_captured():
    assert domain.on_payment_requested(Existing("cancelled", answered=False)) is OnRequest.DECLINE_CANCELLED
    assert domain.on_payment_requested(Existing("cancelled", answered=True)) is OnRequest.NOTHING


def test_cancelling_a_captured_order_refunds_it():
    assert domain.on_order_cancelled(Existing("captured", answered=True)) is OnCancel.REFUND


def test_cancelling_an_order_payments_has_not_seen_records_the_cancellation():
    assert domain.on_order_cancelled(None) is OnCancel.RECORD_CANCELLED


@pytest.mark.parametrize(
    "existing",
    [Existing("declined", True), Existing("refunded", True), Existing("cancelled", False), Existing("cancelled", True)],
)
def test_cancelling_an_order_with_nothing_captured_does_nothing(existing):
    assert domain.on_order_cancelled(existing) is OnCancel.NOTHING


def test_the_cancellation_reason_names_the_orders():
    assert domain.cancellation_reason("stock rejected") == "order cancelled: stock rejected"
    assert domain.cancellation_reason("") == "order cancelled"
