"""Header rules of the gateway (pure functions, RFC 9110 section 7.6.1)."""

from __future__ import annotations

from collections.abc import Iterable

from flotilla_kit.identity import CALLER_ID_HEADER, CALLER_ROLES_HEADER

# Hop-by-hop: they describe one connection, so a proxy never forwards them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# Set by the gateway itself; inbound copies are dropped so that callers cannot spoof them.
OWNED_BY_GATEWAY = frozenset(
    {CALLER_ID_HEADER, CALLER_ROLES_HEADER, "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-deadline-ms"}
)
# Recomputed for each hop (by the HTTP client or by our own middleware).
PER_HOP = frozenset({"host", "content-length", "x-request-id", "traceparent", "tracestate"})


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens |= {token.strip().lower() for token in value.split(",") if token.strip()}
    return tokens


def request_headers_upstream(
    inbound: Iterable[tuple[str, str]],
    *,
    client_ip: str | None,
    scheme: str,
    host: str | None,
    caller: tuple[str, frozenset[str]] | None,
) -> dict[str, str]:
    """Headers to send upstream: the caller's, minus hop-by-hop and gateway-owned ones, plus identity and forwarding."""
    inbound = list(inbound)
    dropped = HOP_BY_HOP | OWNED_BY_GATEWAY | PER_HOP | _connection_tokens(inbound)
    headers: dict[str, str] = {}
    forwarded_for = ""
    for name, value in inbound:
        lowered = name.lower()
        if lowered == "x-forwarded-for":
            forwarded_for = value  # kept as the chain before us; we append the peer below
        if lowered in dropped:
            continue
        headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
    if client_ip:
        headers["x-forwarded-for"] = f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip
    headers["x-forwarded-proto"] = scheme
    if host:
        headers["x-forwarded-host"] = host
    if caller is not None:
        caller_id, roles = caller
        headers[CALLER_ID_HEADER] = caller_id
        headers[CALLER_ROLES_HEADER] = ",".join(sorted(roles))
    return headers


def response_headers_downstream(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Upstream response headers the caller should see (repeats such as set-cookie kept)."""
    upstream = list(upstream)
    dropped = HOP_BY_HOP | PER_HOP | {"date", "server"} | _connection_tokens(upstream)
    return [(name, value) for name, value in upstream if name.lower() not in dropped]
