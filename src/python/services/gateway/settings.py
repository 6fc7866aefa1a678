"""Gateway settings: the shared ones, plus routes, token verification and rate limits."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import PositiveFloat, PositiveInt, ServiceSettings


class GatewaySettings(ServiceSettings, kw_only=True, frozen=True):
    # The route table (TOML); empty means the one shipped with the gateway (routes.toml).
    routes_file: str = ""
    # Token verification: a PEM public key (RS256 or EdDSA) or a JWKS file; one is required when a
    # route needs authentication.
    jwt_public_key_file: str = ""
    jwks_file: str = ""
    jwt_audience: str = "flotilla"
    jwt_issuer: str = ""
    jwt_leeway_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # Rate limits per caller, by class: "default=20/1,burst=40;strict=5/1,burst=5" means 20
    # requests per second with bursts of 40 for "default".
    rate_limits: str = "default=50/1,burst=100;strict=5/1,burst=10"
    upstream_timeout_seconds: PositiveFloat = 10.0
    # Upstream calls of the composed endpoints; short, as a slow part must not hold the whole.
    composition_timeout_seconds: PositiveFloat = 2.0
    # How long a service's open circuit fails calls fast, and how long an instance whose connections
    # keep failing gets no calls; an instance registering (again) ends both at once.
    breaker_open_seconds: PositiveFloat = 5.0
    ejection_seconds: PositiveFloat = 10.0
    openapi_cache_seconds: PositiveFloat = 30.0
    max_request_body_bytes: PositiveInt = 1_048_576
