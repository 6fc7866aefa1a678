"""Rates and percentiles from a service's /metrics text (pure functions; the live view is in test_export)."""

import pytest
from console.instances import quantile, traffic_sample

METRICS = """\
# HELP http_requests_total HTTP requests handled.
# TYPE http_requests_total counter
http_requests_total{method="GET",route="/products",status="200"} 90.0
http_requests_total{method="GET",route="/products",status="503"} 10.0
http_requests_total{method="GET",route="/readyz",status="200"} 1000.0
# HELP http_request_duration_seconds Time.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.01",method="GET",route="/products"} 50.0
http_request_duration_seconds_bucket{le="0.1",method="GET",route="/products"} 99.0
http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/products"} 100.0
http_request_duration_seconds_count{method="GET",route="/products"} 100.0
http_request_duration_seconds_sum{method="GET",route="/products"} 2.0
http_request_duration_seconds_bucket{le="0.01",method="GET",route="/readyz"} 1000.0
http_request_duration_seconds_bucket{le="0.1",method="GET",route="/readyz"} 1000.0
http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/readyz"} 1000.0
"""


def test_a_sample_counts_requests_and_5xx_without_the_operational_routes():
    sample = traffic_sample(METRICS, at=1.0)
    assert sample is not None
    assert (sample.total, sample.errors) == (100.0, 10.0)
    assert sample.buckets == {0.01: 50.0, 0.1: 99.0, float("inf"): 100.0}


def test_percentiles_interpolate_within_a_bucket_as_prometheus_does():
    buckets = {0.01: 50.0, 0.1: 99.0, float("inf"): 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.75) == pytest.approx(0.01 + 0.09 * 25 / 49)
    assert quantile(buckets, 0.999) == 0.1  # in the open bucket: the highest finite bound
    assert quantile({0.01: 0.0, float("inf"): 0.0}, 0.5) is None


def test_text_that_is_not_prometheus_gives_no_sample():
    assert traffic_sample("<html>not metrics</html>{{") is None
