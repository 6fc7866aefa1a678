from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flotilla_kit.metrics import _LATENCY_BUCKETS, ServiceMetrics
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


def _samples(registry: CollectorRegistry, prefix: str) -> list[str]:
    return sorted(line for line in generate_latest(registry).decode().splitlines() if line.startswith(prefix))


@given(st.lists(st.sampled_from(_LATENCY_BUCKETS) | st.floats(0, 20, allow_nan=False), max_size=50))
def test_request_stats_export_what_prometheus_clients_own_metrics_would(durations):
    ours = ServiceMetrics("catalog")
    reference = CollectorRegistry()
    histogram = Histogram(
        "http_request_duration_seconds", "", ["method", "route"], buckets=_LATENCY_BUCKETS, registry=reference
    )
    counter = Counter("http_requests", "", ["method", "route", "status"], registry=reference)
    for index, seconds in enumerate(durations):
        status = 200 if index % 3 else 404
        ours.http.finished("GET", "/products/{id}", status, seconds)
        histogram.labels("GET", "/products/{id}").observe(seconds)
        counter.labels("GET", "/products/{id}", str(status)).inc()

    for name in ("http_request_duration_seconds_bucket", "http_request_duration_seconds_count", "http_requests_total"):
        assert _samples(ours.registry, name) == _samples(reference, name)
    ours_sum = [line.rsplit(" ", 1) for line in _samples(ours.registry, "http_request_duration_seconds_sum")]
    reference_sum = [line.rsplit(" ", 1) for line in _samples(reference, "http_request_duration_seconds_sum")]
    assert [name for name, _ in ours_sum] == [name for name, _ in reference_sum]
    assert [float(value) for _, value in ours_sum] == pytest.approx([float(value) for _, value in reference_sum])


def test_in_flight_requests_are_exported_as_a_gauge():
    metrics = ServiceMetrics("catalog")
    metrics.http.in_flight = 3

    assert _samples(metrics.registry, "http_requests_in_flight") == ["http_requests_in_flight 3.0"]
