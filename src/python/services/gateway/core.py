"""What every request through the gateway needs, built once at start-up: routes, auth, limits, client."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError

from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamConnectError, UpstreamError
from flotilla_kit.problems import (
    BadGateway,
    Forbidden,
    GatewayTimeout,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from gateway import routes as routing
from gateway.auth import Caller, TokenRejected, TokenVerifier
from gateway.openapi import MergedOpenApi
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

_UPSTREAM_PROBLEMS: dict[int, type[Problem]] = {502: BadGateway, 503: ServiceUnavailable, 504: GatewayTimeout}


@dataclass
class Gateway:
    routes: list[routing.Route]
    verifier: TokenVerifier
    limiter: RateLimiter
    client: HttpClient
    openapi: MergedOpenApi
    upstream_timeout: float
    composition_timeout: float

    def authenticate(self, authorization: str | None, auth: str) -> Caller | None:
        """The verified caller; None for an anonymous call to a public route. Raises 401/403 problems."""
        if auth == "public" and not authorization:
            return None
        try:
            caller = self.verifier.verify(authorization)
        except TokenRejected as exc:
            error = "invalid_request" if not authorization else "invalid_token"
            raise Unauthorized(
                exc.reason, headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{exc.reason}"'}
            ) from None
        role = routing.required_role(auth)
        if role and role not in caller.roles:
            raise Forbidden(f"this operation needs role {role!r}")
        return caller

    async def limit(self, rate_class: str, client_ip: str | None, caller: Caller | None) -> None:
        """Count the request against the caller's limit (by IP when anonymous); 429 with Retry-After when over it."""
        key = f"caller:{caller.id}" if caller else f"ip:{client_ip or 'unknown'}"
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


def upstream_problem(exc: UpstreamError) -> Problem:
    # No instance could even be connected to: the service is unavailable (503, as Envoy answers),
    # rather than one that answered badly (502).
    status = 503 if isinstance(exc, UpstreamConnectError) else exc.http_status
    return _UPSTREAM_PROBLEMS.get(status, BadGateway)(str(exc))
