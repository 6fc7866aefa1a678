"""catalog_client: the typed client of the catalog service's HTTP API."""

from __future__ import annotations

import uuid
from importlib import resources
from urllib.parse import quote

from flotilla_contracts.catalog import Product
from flotilla_http.typed import NotFoundError, ServiceCallError, ServiceClient

# Read here, not through flotilla_kit: a client must not pull in the service runtime.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = ["CatalogClient", "NotFoundError", "ServiceCallError"]


class CatalogClient(ServiceClient):
    """Reads products from the catalog (through discovery and flotilla_http's resilience)."""

    service = "catalog"

    async def get_product(self, product_id: uuid.UUID) -> Product:
        """The product with this id; raises NotFoundError when the catalog has none."""
        return await self.get(f"/products/{product_id}", Product)

    async def get_product_by_sku(self, sku: str) -> Product:
        """The product with this SKU (matched case-insensitively); raises NotFoundError when none."""
        return await self.get(f"/products/by-sku/{quote(sku, safe='')}", Product)
