"""The inventory service's HTTP API (the parts other services and the gateway call)."""

from __future__ import annotations

import uuid

import msgspec


class StockLevel(msgspec.Struct, kw_only=True, frozen=True):
    """``GET /stock/{product_id}``: units that can still be reserved."""

    product_id: uuid.UUID
    available: int
