"""The orders service's HTTP API: placing orders, and reading them with their saga's history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from flotilla_contracts.catalog import Money

Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000, description="Units of the product")]
CardToken = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^tok_[A-Za-z0-9_]{1,60}$",
        description="A payment token from the (simulated) provider; `tok_declined` is always declined.",
        examples=["tok_visa"],
    ),
]

# Where an order is in its saga. The first two wait for a step; the last two are final.
OrderStatus = Literal["awaiting_stock", "awaiting_payment", "confirmed", "cancelled"]
FINAL_STATUSES: frozenset[str] = frozenset({"confirmed", "cancelled"})


class OrderLineRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    product_id: uuid.UUID
    quantity: Quantity


class OrderCreate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /orders`` (with an ``Idempotency-Key`` header). Prices are the catalog's at order time."""

    lines: Annotated[list[OrderLineRequest], msgspec.Meta(min_length=1, max_length=50)]
    card_token: CardToken = "tok_visa"


class OrderLine(msgspec.Struct, kw_only=True, frozen=True):
    product_id: uuid.UUID
    sku: str
    quantity: int
    unit_price: Money


class OrderStep(msgspec.Struct, kw_only=True, frozen=True):
    """One entry of an order's history: what happened to it, when, and why."""

    step: str  # e.g. "placed", "stock_reserved", "payment_captured", "cancelled"
    at: datetime
    detail: str = ""


class Order(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    customer_id: str
    status: OrderStatus
    lines: list[OrderLine]
    total: Money
    cancel_reason: str | None = None
    # The step the saga waits for ends by this time, or the order is cancelled; null once final.
    step_deadline: datetime | None = None
    history: list[OrderStep] = []
    created_at: datetime
    updated_at: datetime


class OrderPage(msgspec.Struct, kw_only=True, frozen=True):
    items: list[Order]
    # Pass as `cursor` to get the next page; null on the last page.
    next_cursor: str | None = None


class SagaCounts(msgspec.Struct, kw_only=True, frozen=True):
    """How many orders are in each saga state, and how many wait past their step's deadline."""

    by_status: dict[str, int]
    # Waiting for a step whose deadline has passed: the sweeper cancels them at its next run,
    # unless it is not running (then they stay stuck, and this says so).
    stuck: int
