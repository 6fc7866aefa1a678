"""Notification rules: what a customer is told about an order. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import OrderCancelled, OrderConfirmed
from flotilla_contracts.notifications import NotificationKind

# ISO 4217 currencies whose minor unit is not the hundredth (the rest have two decimals).
_DECIMALS = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV",
                     "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}  # fmt: skip


@dataclass(frozen=True)
class NewNotification:
    kind: NotificationKind
    message: str


def format_money(money: Money) -> str:
    """An amount in minor units as people read it: ``Money(1250, "EUR")`` is ``"12.50 EUR"``."""
    decimals = _DECIMALS.get(money.currency, 2)
    if decimals == 0:
        return f"{money.amount} {money.currency}"
    whole, fraction = divmod(money.amount, 10**decimals)
    return f"{whole}.{fraction:0{decimals}d} {money.currency}"


def notification_for(event: OrderConfirmed | OrderCancelled) -> NewNotification:
    """What the customer is told about the outcome of their order."""
    if isinstance(event, OrderConfirmed):
        return NewNotification(
            kind="order_confirmed",
            message=f"Your order {event.order_id} is confirmed. Total: {format_money(event.total)}.",
        )
    reason = event.reason.strip().rstrip(".")
    because = f": {reason}." if reason else "."
    return NewNotification(kind="order_cancelled", message=f"Your order {event.order_id} was cancelled{because}")
