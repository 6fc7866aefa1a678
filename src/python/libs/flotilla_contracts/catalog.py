"""The catalog service's HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

Sku = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Stock keeping unit: letters, digits, '.', '_' and '-'; matched case-insensitively.",
        examples=["TEA-GREEN-250G"],
    ),
]
ProductName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=5000)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code", examples=["EUR"])]
MinorUnits = Annotated[
    int, msgspec.Meta(ge=0, le=10**12, description="Amount in the currency's minor unit (cents for EUR)")
]


class Money(msgspec.Struct, frozen=True):
    amount: MinorUnits
    currency: CurrencyCode


class ProductCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Unknown fields are refused here: a misspelt field in an admin command must not be ignored.
    sku: Sku
    name: ProductName
    description: Description = ""
    price: Money
    active: bool = True


class ProductPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; fields left out keep their value."""

    name: ProductName | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    price: Money | msgspec.UnsetType = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET


class Product(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    sku: str
    name: str
    description: str
    price: Money
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime


class ProductPage(msgspec.Struct, kw_only=True, frozen=True):
    items: list[Product]
    # Pass as `cursor` to get the next page; null on the last page.
    next_cursor: str | None = None
