"""Inventory settings: the shared ones, plus the inventory's own."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import ServiceSettings


class InventorySettings(ServiceSettings, kw_only=True, frozen=True):
    # Largest page of stock movements a client may ask for.
    max_page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
