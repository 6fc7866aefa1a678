"""Prometheus metrics of one app, in the app's own registry (tests build many apps per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Latency buckets in seconds, from sub-millisecond in-memory answers to slow database pages.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The metrics every service exports; services register their own in ``registry`` too."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests handled, by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("http_requests_in_flight", "HTTP requests being handled now.", registry=self.registry)
        self.info = Info("service", "Service name and versions.", registry=self.registry)
        self.service = service
