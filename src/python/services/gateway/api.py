"""The gateway's Litestar handlers: composed endpoints and the merged OpenAPI document (relay.py routes the rest)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath

from flotilla_contracts.storefront import StorefrontProduct
from flotilla_http.errors import UpstreamError
from gateway.core import Gateway, upstream_problem
from gateway.storefront import storefront_product

STOREFRONT_RATE_CLASS = "default"
# Composed endpoints are Litestar handlers under /api/; everything else under /api/ is relayed.
COMPOSED_PREFIXES = ("/api/storefront/",)


def _gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


@get("/api/storefront/products/{product_id:uuid}", tags=["storefront"])
async def storefront(
    request: Request[Any, Any, Any], state: State, product_id: FromPath[uuid.UUID]
) -> StorefrontProduct:
    """A product with its availability; availability is "unknown" when inventory cannot say."""
    gateway = _gateway(state)
    caller = gateway.authenticate(request.headers.get("authorization"), "public")
    await gateway.limit(STOREFRONT_RATE_CLASS, request.client.host if request.client else None, caller)
    try:
        return await storefront_product(gateway.client, product_id, timeout=gateway.composition_timeout)
    except UpstreamError as exc:
        raise upstream_problem(exc) from None


@get("/openapi.json", include_in_schema=False)
async def openapi_document(state: State) -> dict[str, Any]:
    """The merged OpenAPI document of every routed service."""
    return await _gateway(state).openapi.document()
