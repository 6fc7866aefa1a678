"""Composed endpoints: one public answer assembled from several services in parallel."""

from __future__ import annotations

import asyncio
import logging
import uuid

import msgspec

from flotilla_contracts.catalog import Product
from flotilla_contracts.inventory import StockLevel
from flotilla_contracts.storefront import Availability, StorefrontProduct
from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamError
from flotilla_kit.problems import BadGateway, NotFound

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
    response = await client.request("catalog", "GET", f"/products/{product_id}", timeout=timeout)
    if response.status == 404:
        raise NotFound(f"no product with id {product_id}")
    if response.status != 200:
        raise BadGateway(f"catalog answered {response.status}")
    try:
        return response.json(Product)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadGateway(f"catalog answered with an unexpected body: {exc}") from None


async def _availability(client: HttpClient, product_id: uuid.UUID, timeout: float) -> Availability:
    try:
        response = await client.request("inventory", "GET", f"/stock/{product_id}", timeout=timeout)
        if response.status != 200:
            return _UNKNOWN
        level = response.json(StockLevel)
    except (UpstreamError, msgspec.ValidationError, msgspec.DecodeError) as exc:
        log.info("availability unknown: %s", exc, extra={"product_id": str(product_id)})
        return _UNKNOWN
    return Availability(status="in_stock" if level.available > 0 else "out_of_stock", available=level.available)
