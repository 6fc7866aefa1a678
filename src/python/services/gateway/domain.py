"""Header rules of the gateway (pure functions, RFC 9110 section 7.6.1)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from flotilla_kit.identity import CALLER_ID_HEADER, CALLER_ROLES_HEADER

# Header names as ASGI servers and the HTTP client carry them: lower-case bytes.
# Hop-by-hop: they describe one connection, so a proxy never forwards them.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)
# Set by the gateway itself; inbound copies are dropped so that callers cannot spoof them.
OWNED_BY_GATEWAY = frozenset(
    {
        CALLER_ID_HEADER.encode(),
        CALLER_ROLES_HEADER.encode(),
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-deadline-ms",
    }
)
# Recomputed for each hop (by the HTTP client or by our own middleware).
PER_HOP = frozenset({b"host", b"content-length", b"x-request-id", b"traceparent", b"tracestate"})
_DROPPED_UPSTREAM = HOP_BY_HOP | OWNED_BY_GATEWAY | PER_HOP
_DROPPED_DOWNSTREAM = HOP_BY_HOP | PER_HOP | {b"date", b"server"}

Headers = list[tuple[bytes, bytes]]


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens |= {token.strip().lower() for token in value.split(b",") if token.strip()}
    return frozenset(tokens)


def _lowered(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    return [(name.lower(), value) for name, value in headers]


def request_headers_upstream(
    inbound: Iterable[tuple[bytes, bytes]],
    *,
    client_ip: str | None,
    scheme: str,
    caller: tuple[str, frozenset[str]] | None,
) -> Headers:
    """Headers to send upstream: the caller's (repeats kept), minus hop-by-hop and gateway-owned
    ones, plus the verified identity and the forwarding chain."""
    inbound = _lowered(inbound)
    tokens = _connection_tokens(inbound)
    headers: Headers = []
    forwarded_for = host = b""
    for name, value in inbound:
        if name in _DROPPED_UPSTREAM or name in tokens:
            if name == b"x-forwarded-for":
                forwarded_for = value  # kept as the chain before us; we append the peer below
            elif name == b"host":
                host = value
            continue
        headers.append((name, value))
    if client_ip:
        peer = client_ip.encode("latin-1")
        headers.append((b"x-forwarded-for", forwarded_for + b", " + peer if forwarded_for else peer))
    headers.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if host:
        headers.append((b"x-forwarded-host", host))
    if caller is not None:
        caller_id, roles = caller
        headers.append((CALLER_ID_HEADER.encode(), caller_id.encode("latin-1")))
        headers.append((CALLER_ROLES_HEADER.encode(), ",".join(sorted(roles)).encode("latin-1")))
    return headers


def response_headers_downstream(upstream: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Upstream response headers the caller should see (repeats such as set-cookie kept), lower-cased."""
    upstream = _lowered(upstream)
    tokens = _connection_tokens(upstream)
    return [(name, value) for name, value in upstream if name not in _DROPPED_DOWNSTREAM and name not in tokens]


def public_problem(body: bytes, headers: Headers, *, instance: str) -> bytes:
    """A service's problem document with ``instance`` made the path the caller asked for.

    The service names its own path (``/products/x``), which means nothing to a caller of the
    gateway (``/api/catalog/products/x``). Anything that is not a problem document is left alone.
    """
    if not any(name == b"content-type" and value.startswith(b"application/problem+json") for name, value in headers):
        return body
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body
    if not isinstance(document, dict) or "instance" not in document:
        return body
    document["instance"] = instance
    return msgspec.json.encode(document)
