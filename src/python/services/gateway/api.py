"""The gateway's Litestar handlers: composed endpoints and the merged OpenAPI document (relay.py routes the rest)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.params import FromPath

from flotilla_contracts.storefront import StorefrontProduct
from flotilla_http.errors import UpstreamError
from gateway.core import Gateway, upstream_problem
from gateway.policy import EdgePolicy
from gateway.storefront import storefront_product

# Composed endpoints are Litestar handlers under these prefixes; everything else under /api/ is
# relayed. Each prefix has its policy, which the edge (relay.py) applies before the handler runs,
# with the same function as for relayed routes: a handler here checks no token and no limit itself.
COMPOSED: dict[str, EdgePolicy] = {
    "/api/storefront/": EdgePolicy(auth="public", rate_limit="default"),
}


def _gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


@get("/api/storefront/products/{product_id:uuid}", tags=["storefront"])
async def storefront(state: State, product_id: FromPath[uuid.UUID]) -> StorefrontProduct:
    """A product with its availability; availability is "unknown" when inventory cannot say."""
    gateway = _gateway(state)
    try:
        return await storefront_product(gateway.client, product_id, timeout=gateway.composition_timeout)
    except UpstreamError as exc:
        raise upstream_problem(exc) from None


@get("/openapi.json", include_in_schema=False)
async def openapi_document(state: State) -> dict[str, Any]:
    """The merged OpenAPI document of every routed service."""
    return await _gateway(state).openapi.document()
