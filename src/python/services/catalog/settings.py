"""Catalog settings: the shared ones, plus the catalog's own."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import ServiceSettings


class CatalogSettings(ServiceSettings, kw_only=True, frozen=True):
    # Largest page a client may ask for; bigger pages cost the database and the wire.
    max_page_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
