"""The payments service's HTTP API (read only: payments are driven by events)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from flotilla_contracts.catalog import Money

# "cancelled": the order was cancelled before its payment was asked for (nothing charged).
PaymentStatus = Literal["captured", "declined", "refunded", "cancelled"]


class Payment(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /payments/{order_id}``: the one payment of an order."""

    order_id: uuid.UUID
    payment_id: uuid.UUID
    status: PaymentStatus
    amount: Money
    reason: str = ""
    created_at: datetime
    updated_at: datetime


class PaymentPage(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /payments``: payments in the order they were recorded, a page at a time."""

    items: list[Payment]
    # Pass as `cursor` to get the next page; null on the last page.
    next_cursor: str | None = None
