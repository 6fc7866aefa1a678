"""The inventory service's HTTP API: stock levels, admin changes kept as movements, reservations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=200, description="Why the stock changes")]
StockCount = Annotated[int, msgspec.Meta(ge=0, le=10**9)]


class StockLevel(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /stock/{product_id}``: units that can still be reserved (``available``), of
    ``on_hand`` units of which ``reserved`` are held for orders not yet confirmed."""

    product_id: uuid.UUID
    available: int
    on_hand: int = 0
    reserved: int = 0


class StockSet(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``PUT /stock/{product_id}`` (admin): the counted units on hand."""

    on_hand: StockCount
    reason: Reason


class StockAdjustment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``POST /stock/{product_id}/adjustments`` (admin): units received (+) or lost (-)."""

    delta: Annotated[int, msgspec.Meta(ge=-(10**9), le=10**9)]
    reason: Reason


class StockMovement(msgspec.Struct, kw_only=True, frozen=True):
    """One change of a product's units on hand: an admin's, or an order's commit."""

    id: int
    product_id: uuid.UUID
    delta: int
    on_hand_after: int
    reason: str
    order_id: uuid.UUID | None = None
    at: datetime


class StockMovementPage(msgspec.Struct, kw_only=True, frozen=True):
    items: list[StockMovement]
    next_cursor: str | None = None


ReservationStatus = Literal["reserved", "rejected", "released", "committed"]


class ReservedLine(msgspec.Struct, kw_only=True, frozen=True):
    product_id: uuid.UUID
    quantity: int


class Reservation(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /reservations/{order_id}``: what inventory holds (or held) for one order.

    ``released`` is also what an order cancelled before its reservation arrived leaves behind, so
    that a late ``OrderPlaced`` reserves nothing."""

    order_id: uuid.UUID
    status: ReservationStatus
    lines: list[ReservedLine] = []
    reason: str = ""
    created_at: datetime
    updated_at: datetime
