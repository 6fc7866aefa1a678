"""The gateway's HTTP surface: the routed API, composed endpoints and the merged OpenAPI document."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from litestar import Request, get, route
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response.base import ASGIResponse
from redis.exceptions import RedisError

from flotilla_contracts.storefront import StorefrontProduct
from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamConnectError, UpstreamError
from flotilla_kit.problems import (
    BadGateway,
    BadRequest,
    Forbidden,
    GatewayTimeout,
    MethodNotAllowed,
    NotFound,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from gateway import routes as routing
from gateway.auth import Caller, TokenRejected, TokenVerifier
from gateway.openapi import MergedOpenApi
from gateway.proxy import forward
from gateway.ratelimit import RateLimiter
from gateway.storefront import storefront_product

log = logging.getLogger(__name__)

_UPSTREAM_PROBLEMS: dict[int, type[Problem]] = {502: BadGateway, 503: ServiceUnavailable, 504: GatewayTimeout}
STOREFRONT_RATE_CLASS = "default"


@dataclass
class Gateway:
    """Everything a routed request needs, built once at start-up."""

    routes: list[routing.Route]
    verifier: TokenVerifier
    limiter: RateLimiter
    client: HttpClient
    openapi: MergedOpenApi
    upstream_timeout: float
    composition_timeout: float

    def authenticate(self, request: Request[Any, Any, Any], auth: str) -> Caller | None:
        """The verified caller; None for an anonymous call to a public route. Raises 401/403 problems."""
        header = request.headers.get("authorization")
        if auth == "public" and not header:
            return None
        try:
            caller = self.verifier.verify(header)
        except TokenRejected as exc:
            error = "invalid_request" if not header else "invalid_token"
            raise Unauthorized(
                exc.reason, headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{exc.reason}"'}
            ) from None
        role = auth.removeprefix("role:") if auth.startswith("role:") else None
        if role and role not in caller.roles:
            raise Forbidden(f"this operation needs role {role!r}")
        return caller

    async def limit(self, rate_class: str, request: Request[Any, Any, Any], caller: Caller | None) -> None:
        """Count the request against the caller's limit; 429 with Retry-After when over it."""
        key = f"caller:{caller.id}" if caller else f"ip:{request.client.host if request.client else 'unknown'}"
        try:
            decision = await self.limiter.check(rate_class, key)
        except (RedisError, OSError) as exc:
            # Fail open: an outage of the limiter's Redis must not take the whole API down.
            log.warning("rate limiter unavailable, request allowed: %s", exc)
            return
        if not decision.allowed:
            raise TooManyRequests(
                f"rate limit of class {rate_class!r} exceeded; retry in {decision.retry_after_seconds}s",
                headers={"Retry-After": str(decision.retry_after_seconds)},
            )


def _gateway(state: State) -> Gateway:
    gateway: Gateway = state.gateway
    return gateway


def upstream_problem(exc: UpstreamError) -> Problem:
    # No instance could even be connected to: the service is unavailable (503, as Envoy answers),
    # rather than one that answered badly (502).
    status = 503 if isinstance(exc, UpstreamConnectError) else exc.http_status
    return _UPSTREAM_PROBLEMS.get(status, BadGateway)(str(exc))


@route(
    "/api/{path:path}",
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
    include_in_schema=False,
)
async def routed(request: Request[Any, Any, Any], state: State) -> ASGIResponse:
    """Forward ``/api/...`` to the service the route table names, after auth and rate limits."""
    gateway = _gateway(state)
    path = request.url.path
    found = routing.match(gateway.routes, request.method, path)
    if found is None:
        allowed = routing.methods_allowed(gateway.routes, path)
        if allowed:
            raise MethodNotAllowed(
                f"{request.method} is not routed for {path}", headers={"Allow": ", ".join(sorted(allowed))}
            )
        raise NotFound(f"no route for {path}")
    if routing.is_internal(found.upstream_path(path)):
        raise NotFound(f"no route for {path}")
    caller = gateway.authenticate(request, found.auth)
    await gateway.limit(found.rate_limit, request, caller)
    try:
        return await forward(
            gateway.client,
            found,
            request,
            caller=(caller.id, caller.roles) if caller else None,
            timeout=found.timeout or gateway.upstream_timeout,
        )
    except UpstreamError as exc:
        raise upstream_problem(exc) from None
    except ValueError as exc:  # a path the HTTP client refuses to send (controls, bad escapes)
        raise BadRequest(f"malformed path: {exc}") from None


@get("/api/storefront/products/{product_id:uuid}", tags=["storefront"])
async def storefront(
    request: Request[Any, Any, Any], state: State, product_id: FromPath[uuid.UUID]
) -> StorefrontProduct:
    """A product with its availability; availability is "unknown" when inventory cannot say."""
    gateway = _gateway(state)
    caller = gateway.authenticate(request, "public")
    await gateway.limit(STOREFRONT_RATE_CLASS, request, caller)
    try:
        return await storefront_product(gateway.client, product_id, timeout=gateway.composition_timeout)
    except UpstreamError as exc:
        raise upstream_problem(exc) from None


@get("/openapi.json", include_in_schema=False)
async def openapi_document(state: State) -> dict[str, Any]:
    """The merged OpenAPI document of every routed service."""
    return await _gateway(state).openapi.document()
