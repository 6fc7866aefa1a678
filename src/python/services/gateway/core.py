"""What every request through the gateway needs, built once at start-up: routes, auth, limits, client;
and the one policy every request under ``/api/`` passes, relayed or composed (``Gateway.admit``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from litestar.types import HTTPScope
from redis.exceptions import RedisError

from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamConnectError, UpstreamError
from flotilla_kit.problems import (
    BadGateway,
    BadRequest,
    ContentTooLarge,
    Forbidden,
    GatewayTimeout,
    Problem,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from flotilla_kit.tokens import Caller, TokenRejected, TokenVerifier
from gateway import routes as routing
from gateway.openapi import MergedOpenApi
from gateway.policy import BODILESS_METHODS, Policy
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

_UPSTREAM_PROBLEMS: dict[int, type[Problem]] = {502: BadGateway, 503: ServiceUnavailable, 504: GatewayTimeout}

# What a WWW-Authenticate quoted-string can carry as it is (a reason is ours, but may quote PyJWT).
_UNQUOTABLE = re.compile(r"[^ !#-\[\]-~]")


@dataclass(frozen=True, slots=True)
class Admission:
    """A request ``Gateway.admit`` let through, with what it learnt on the way."""

    caller: Caller | None  # None: anonymous on a public path
    client_ip: str | None
    content_length: int | None  # as declared; None when absent
    chunked: bool


@dataclass
class Gateway:
    routes: list[routing.Route]
    verifier: TokenVerifier
    limiter: RateLimiter
    client: HttpClient
    openapi: MergedOpenApi
    upstream_timeout: float
    composition_timeout: float
    max_body_bytes: int

    async def admit(self, scope: HTTPScope, policy: Policy) -> Admission:
        """The policy every request under /api/ passes before any service is called, the relay's
        and the composed endpoints' alike: the body's framing (400 when unreadable, 413 on a method
        that takes no body or over the size limit), then the token (401, 403), then the caller's
        rate limit (429 with Retry-After). Cheapest first: a request refused for its body costs no
        token check and no permit. Raises the problem; the body itself is left to be read.
        """
        authorization = content_length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    # Which one counts is where a proxy in front and the gateway could disagree.
                    raise BadRequest("a request carries one Authorization header at most")
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
        size = None
        if content_length is not None:
            if not content_length.isdigit():
                raise BadRequest(f"content-length {content_length.decode('latin-1')!r} is not a number")
            size = int(content_length)
        if (size or chunked) and scope["method"] in BODILESS_METHODS:
            raise ContentTooLarge(f"a {scope['method']} request takes no body")
        if size is not None and size > self.max_body_bytes:
            raise ContentTooLarge(f"the request body of {size} bytes is over the limit of {self.max_body_bytes}")
        client = scope.get("client")
        client_ip = client[0] if client else None
        caller = self.authenticate(authorization, policy.auth)
        rate_class = policy.rate_limit
        try:
            decision = await self.limiter.check(
                rate_class, f"caller:{caller.id}" if caller else f"ip:{client_ip or 'unknown'}"
            )
        except (RedisError, OSError) as exc:
            # Fail open: an outage of the limiter's Redis must not take the whole API down.
            log.warning("rate limiter unavailable, request allowed: %s", exc)
        else:
            if not decision.allowed:
                raise TooManyRequests(
                    f"rate limit of class {rate_class!r} exceeded; retry in {decision.retry_after_seconds}s",
                    headers={"Retry-After": str(decision.retry_after_seconds)},
                )
        return Admission(caller, client_ip, size, chunked)

    def authenticate(self, authorization: str | None, auth: str) -> Caller | None:
        """The verified caller; None for an anonymous call to a public route. Raises 401/403 problems."""
        if auth == "public" and not authorization:
            return None
        try:
            caller = self.verifier.verify(authorization)
        except TokenRejected as exc:
            error = "invalid_request" if not authorization else "invalid_token"
            description = _UNQUOTABLE.sub("'", exc.reason)
            raise Unauthorized(
                exc.reason, headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"'}
            ) from None
        role = routing.required_role(auth)
        if role and role not in caller.roles:
            raise Forbidden(f"this operation needs role {role!r}")
        return caller


def upstream_problem(exc: UpstreamError) -> Problem:
    # No instance could even be connected to: the service is unavailable (503, as Envoy answers),
    # rather than one that answered badly (502).
    status = 503 if isinstance(exc, UpstreamConnectError) else exc.http_status
    return _UPSTREAM_PROBLEMS.get(status, BadGateway)(str(exc))
