"""Console settings: the shared ones, plus the console's own (the store's bounds, the ingestion limits, write mode)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from flotilla_kit.settings import ServiceSettings

Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


class ConsoleSettings(ServiceSettings, kw_only=True, frozen=True):
    # The largest request body (an OTLP export, before inflating): the SDK's batches stay well below it.
    max_request_body_bytes: Positive = 8 * 1_048_576
    # The trace store keeps at most this many spans; past it, the oldest traces go first (whole).
    console_max_spans: Positive = 200_000
    # One OTLP export may hold at most this many spans (the SDK's batches hold 512 by default).
    console_max_spans_per_request: Positive = 5_000
    # A gzip body may inflate to at most this many bytes: a small bomb must not fill the memory.
    console_max_inflated_bytes: Positive = 16 * 1_048_576
    # Actions (replaying a dead letter) are refused with 403 unless this is true.
    console_write: bool = False
    # How long one probe of an instance (/readyz, /info, /metrics) may take before it counts as failed.
    console_probe_timeout_seconds: Seconds = 2.0
    # Fields whose values are never shown nor stored (comma-separated, any case; a dotted attribute
    # name matches by its last part): span attributes, dead letters' payloads.
    console_masked_fields: str = "password,secret,token,authorization,cookie,card_number,cvv,iban"
    # Signs login links and session cookies (at least 32 characters). Empty: a random one per start,
    # and the console logs a login link at start (sessions then end with the process).
    console_secret: str = ""
    # A session lasts this long at most (a JWT's session: until the token expires, if sooner).
    console_session_seconds: Seconds = 12 * 3600
    # A login link works once, within this time.
    console_login_link_seconds: Seconds = 15 * 60
    # Only callers with one of these roles may use the console at all (comma-separated); its actions
    # need "admin" too. A shop customer's token, signed by the same key, opens nothing.
    console_roles: str = "admin,operator"
    # A consumer idle this long (no read, no ack) may be presumed dead and its entries handed over;
    # entries delivered to it more recently stay where they are.
    console_dead_consumer_idle_seconds: Seconds = 60.0
    # Mark the session cookie Secure (sent over https only): set it behind a TLS-terminating proxy.
    # Requests that arrive over https get a Secure cookie anyway.
    console_cookie_secure: bool = False
    # The audit log keeps at most this many entries, the oldest dropped first.
    console_audit_max_entries: Positive = 100_000
    # Operators' JWTs (the gateway's): its public key or JWKS, audience and issuer.
    jwt_public_key_file: str = ""
    jwks_file: str = ""
    jwt_audience: str = "flotilla"
    jwt_issuer: str = ""
    # Streams and instances are found in this Redis namespace (flotilla_discovery's).
    console_discovery_namespace: str = "flotilla"
