"""Builds the gateway's Litestar app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from flotilla_discovery.balancer import Balancer
from flotilla_http.client import HttpClient
from flotilla_http.policies import BreakerPolicy
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version
from flotilla_kit.settings import SettingsError
from flotilla_kit.tokens import KeyConfigError, TokenVerifier
from flotilla_redis.pipelined import PipelinedRedis
from gateway.api import COMPOSED, openapi_document, storefront
from gateway.core import Gateway
from gateway.openapi import MergedOpenApi
from gateway.policy import Policy
from gateway.ratelimit import RateLimiter, parse_rate_limits
from gateway.relay import Relay
from gateway.routes import RouteError, load_routes
from gateway.settings import GatewaySettings

VERSION = read_version("gateway")


def create_app(settings: GatewaySettings) -> Litestar:
    """The gateway app; raises SettingsError when the routes, keys or limits do not fit together."""
    problems: list[str] = []
    try:
        routes = load_routes(settings.routes_file)
    except RouteError as exc:
        problems.append(str(exc))
        routes = []
    try:
        verifier = TokenVerifier(
            public_key_file=settings.jwt_public_key_file,
            jwks_file=settings.jwks_file,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
        )
    except KeyConfigError as exc:
        problems.append(str(exc))
        verifier = TokenVerifier(audience=settings.jwt_audience)
    try:
        rate_classes = parse_rate_limits(settings.rate_limits)
    except ValueError as exc:
        problems.append(f"RATE_LIMITS={settings.rate_limits!r}: {exc}")
        rate_classes = {}
    policies: list[Policy] = [*routes, *COMPOSED.values()]
    if any(p.auth != "public" for p in policies) and not verifier.configured:
        problems.append("routes need authentication: set JWT_PUBLIC_KEY_FILE or JWKS_FILE")
    for unknown in sorted({p.rate_limit for p in policies} - set(rate_classes)):
        problems.append(f"routes use rate class {unknown!r}, which RATE_LIMITS does not define")
    limits_redis = None
    if not settings.redis_url:
        problems.append("REDIS_URL: the gateway keeps its rate limits in Redis")
    else:
        try:
            limits_redis = PipelinedRedis(settings.redis_url)
        except ValueError as exc:
            problems.append(f"REDIS_URL: {exc}")
    if problems or limits_redis is None:
        raise SettingsError(problems)

    relay = Relay()

    @contextlib.asynccontextmanager
    async def gateway_component(app: Litestar) -> AsyncIterator[None]:
        http = HttpClient(
            Balancer(app.state.resolver, ejection_seconds=settings.ejection_seconds),
            default_timeout=settings.upstream_timeout_seconds,
            breaker=BreakerPolicy(open_seconds=settings.breaker_open_seconds),
            metrics_registry=app.state.metrics.registry,
        )
        openapi = MergedOpenApi(  # raises for an endpoint of ours under /api/ without a policy
            http,
            routes,
            version=VERSION,
            cache_seconds=settings.openapi_cache_seconds,
            timeout=settings.composition_timeout_seconds,
            own_document=app.openapi_schema.to_schema(),
            composed=COMPOSED,
        )
        await http.start()
        app.state.gateway = relay.gateway = Gateway(
            routes=routes,
            verifier=verifier,
            limiter=RateLimiter(limits_redis, rate_classes),
            client=http,
            openapi=openapi,
            upstream_timeout=settings.upstream_timeout_seconds,
            composition_timeout=settings.composition_timeout_seconds,
            max_body_bytes=settings.max_request_body_bytes,
        )
        app.state.readiness_checks["redis"] = limits_redis.ping
        try:
            yield
        finally:
            relay.gateway = None
            await http.close()
            await limits_redis.close()

    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[storefront, openapi_document],
        components=[gateway_component],
        database=False,
        wrap_handler=lambda litestar: relay.wrap(litestar, composed=COMPOSED),
        # The gateway's port faces callers: /metrics and /info only ever on INTERNAL_PORT.
        internal_endpoints_public=False,
    )
