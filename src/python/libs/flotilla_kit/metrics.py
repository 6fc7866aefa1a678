"""Prometheus metrics of one app, in the app's own registry (tests build many apps per process)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

# Latency buckets in seconds, from sub-millisecond in-memory answers to slow database pages.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpRequestStats:
    """``http_requests_total``, ``http_request_duration_seconds`` and ``http_requests_in_flight``.

    Kept in plain ints and turned into metric families when ``/metrics`` is read. prometheus_client's
    own metrics take a lock on every update, which cost ~8 µs of every request here; these are
    updated on the app's event loop only (never from threads), so they need none.
    """

    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self.in_flight = 0
        self._buckets = buckets
        self._counts: dict[tuple[str, str, str], int] = {}
        # (method, route) -> observations per bucket (the last one +Inf), then their sum.
        self._latency: dict[tuple[str, str], list[float]] = {}

    def finished(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one handled request; ``route`` is a template, never a raw path (bounded labels)."""
        key = (method, route, str(status))
        self._counts[key] = self._counts.get(key, 0) + 1
        row = self._latency.get((method, route))
        if row is None:
            row = self._latency[(method, route)] = [0] * (len(self._buckets) + 2)
        row[bisect_left(self._buckets, seconds)] += 1  # the first bucket whose bound is >= seconds
        row[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        in_flight = GaugeMetricFamily("http_requests_in_flight", "HTTP requests being handled now.")
        in_flight.add_metric([], self.in_flight)
        yield in_flight
        requests = CounterMetricFamily(
            "http_requests",
            "HTTP requests handled, by route template and status code.",
            labels=["method", "route", "status"],
        )
        # list(): one step under the GIL, so even a scrape from another thread (prometheus_client's
        # own HTTP server) reads a consistent snapshot instead of a dict changing under it.
        for request_labels, count in list(self._counts.items()):
            requests.add_metric(list(request_labels), count)
        yield requests
        latency = HistogramMetricFamily(
            "http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            labels=["method", "route"],
        )
        bounds = [*(str(bound) for bound in self._buckets), "+Inf"]
        for latency_labels, row in list(self._latency.items()):
            *observed_per_bucket, total_seconds = row  # one copy, so that counts and sum agree
            cumulative, buckets = 0.0, []
            for bound, observed in zip(bounds, observed_per_bucket, strict=True):
                cumulative += observed
                buckets.append((bound, cumulative))
            latency.add_metric(list(latency_labels), buckets, sum_value=total_seconds)
        yield latency


class ServiceMetrics:
    """The metrics every service exports; services register their own in ``registry`` too."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http = HttpRequestStats()
        self.registry.register(self.http)
        self.info = Info("service", "Service name and versions.", registry=self.registry)
        self.service = service
