"""The gateway's composed storefront API."""

from __future__ import annotations

from typing import Literal

import msgspec

from flotilla_contracts.catalog import Product


class Availability(msgspec.Struct, kw_only=True, frozen=True):
    # "unknown" when inventory did not answer in time: the product is still shown.
    status: Literal["in_stock", "out_of_stock", "unknown"]
    available: int | None = None


class StorefrontProduct(msgspec.Struct, kw_only=True, frozen=True):
    product: Product
    availability: Availability
