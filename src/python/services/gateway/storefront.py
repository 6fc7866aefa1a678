"""Composed endpoints: one public answer assembled from several services in parallel."""

from __future__ import annotations

import asyncio
import logging
import uuid

from catalog_client import CatalogClient
from flotilla_contracts.catalog import Product
from flotilla_contracts.storefront import Availability, StorefrontProduct
from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamError
from flotilla_http.typed import NotFoundError, ServiceCallError
from flotilla_kit.problems import BadGateway, NotFound
from inventory_client import InventoryClient

log = logging.getLogger(__name__)

_UNKNOWN = Availability(status="unknown")


async def storefront_product(client: HttpClient, product_id: uuid.UUID, *, timeout: float) -> StorefrontProduct:
    """Catalog product and inventory availability, fetched at once.

    The product is required: its absence is 404, its service's failure a 5xx problem. The
    availability is not: when inventory fails or is slow, it is reported as unknown.
    """
    product, availability = await asyncio.gather(
        _product(client, product_id, timeout), _availability(client, product_id, timeout)
    )
    return StorefrontProduct(product=product, availability=availability)


async def _product(client: HttpClient, product_id: uuid.UUID, timeout: float) -> Product:
    try:
        return await CatalogClient(client, timeout=timeout).get_product(product_id)
    except NotFoundError:
        raise NotFound(f"no product with id {product_id}") from None
    except ServiceCallError as exc:
        raise BadGateway(f"catalog answered {exc.status}: {exc.detail}") from None


async def _availability(client: HttpClient, product_id: uuid.UUID, timeout: float) -> Availability:
    try:
        level = await InventoryClient(client, timeout=timeout).get_stock(product_id)
    except (UpstreamError, ServiceCallError) as exc:
        log.info("availability unknown: %s", exc, extra={"product_id": str(product_id)})
        return _UNKNOWN
    return Availability(status="in_stock" if level.available > 0 else "out_of_stock", available=level.available)
