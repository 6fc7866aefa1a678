"""Prometheus metrics of outgoing calls, in the registry the service exports."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

# The methods of RFC 9110 and PATCH; any other token is a method too, to a server.
_METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})


def method_label(method: str) -> str:
    """``method`` as a metric label: OTHER for the unusual ones, so that callers cannot grow the series."""
    return method if method in _METHOD_LABELS else "OTHER"


class ClientMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "flotilla_http_client_requests_total",
            "Calls to other services (retries included in one call), by outcome: ok, client_error, "
            "server_error, connect_error, timeout, deadline_exceeded, circuit_open, no_instance, cancelled, "
            "caller_error (the caller's streamed body failed or was too slow), error.",
            ["service", "method", "outcome"],
            registry=registry,
        )
        self.retries = Counter(
            "flotilla_http_client_retries_total",
            "Attempts after the first, by what the previous attempt met: connect_error, timeout, "
            "lost_connection, status_502, status_503, status_504.",
            ["service", "reason"],
            registry=registry,
        )
        self.retries_denied = Counter(
            "flotilla_http_client_retries_denied_total",
            "Retries not made because the service's retry budget was spent.",
            ["service"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "flotilla_http_client_breaker_state",
            "Circuit state per upstream service: 0 closed, 1 half-open, 2 open.",
            ["service"],
            registry=registry,
        )
        self.breaker_transitions = Counter(
            "flotilla_http_client_breaker_transitions_total",
            "Circuit state changes per upstream service.",
            ["service", "from_state", "to_state"],
            registry=registry,
        )
