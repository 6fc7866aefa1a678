from __future__ import annotations

import time

import pytest

from flotilla_discovery.balancer import NoInstances
from flotilla_http import DeadlineExceeded, NoHealthyInstance, UpstreamTimeout
from flotilla_http.context import new_trace, request_id_var, trace_var
from flotilla_http.deadline import deadline_var


def echoed(response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


async def test_json_call_forwards_request_id_new_trace_span_and_deadline(make_client, granian_upstream):
    client = await make_client({"catalog": [granian_upstream]})
    parent = new_trace()
    request_id_var.set("req-123")
    trace_var.set(parent)

    response = await client.request("catalog", "POST", "/echo?x=1", json={"sku": "WDG-1"}, timeout=2.0)

    assert response.status == 200
    assert response.instance.url == granian_upstream
    body = response.json()
    assert body["method"] == "POST" and body["query"] == "x=1" and body["body"] == '{"sku":"WDG-1"}'
    headers = echoed(response)
    assert headers["x-request-id"] == "req-123"
    assert headers["content-type"] == "application/json"
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert trace_id == parent.trace_id and span_id != parent.span_id
    assert 0 < int(headers["x-deadline-ms"]) <= 2000


async def test_each_call_gets_its_own_span_in_the_same_trace(make_client, granian_upstream):
    client = await make_client({"catalog": [granian_upstream]})
    trace_var.set(new_trace())

    first = echoed(await client.request("catalog", "GET", "/echo"))["traceparent"]
    second = echoed(await client.request("catalog", "GET", "/echo"))["traceparent"]

    assert first.split("-")[1] == second.split("-")[1]
    assert first.split("-")[2] != second.split("-")[2]


async def test_without_context_no_request_id_or_traceparent_is_invented(make_client, granian_upstream):
    client = await make_client({"catalog": [granian_upstream]}, default_timeout=3.0)

    headers = echoed(await client.request("catalog", "GET", "/echo"))

    assert "x-request-id" not in headers and "traceparent" not in headers
    assert 0 < int(headers["x-deadline-ms"]) <= 3000


async def test_incoming_deadline_caps_the_timeout_and_spoofed_deadline_headers_are_replaced(
    make_client, granian_upstream
):
    client = await make_client({"catalog": [granian_upstream]})
    deadline_var.set(time.monotonic() + 0.8)

    response = await client.request("catalog", "GET", "/echo", headers={"X-Deadline-Ms": "999999"}, timeout=30.0)

    assert 0 < int(echoed(response)["x-deadline-ms"]) <= 800


async def test_upstream_slower_than_the_timeout_fails_with_upstream_timeout_long_before_it_answers(
    make_client, granian_upstream
):
    client = await make_client({"catalog": [granian_upstream]})
    started = time.monotonic()

    with pytest.raises(UpstreamTimeout) as caught:
        await client.request("catalog", "GET", "/sleep?seconds=5", timeout=0.2)

    assert time.monotonic() - started < 2.0  # 10x the timeout; the upstream sleeps 5 s
    assert caught.value.http_status == 504 and caught.value.service == "catalog"


async def test_expired_deadline_fails_at_once_without_reaching_the_upstream(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})
    deadline_var.set(time.monotonic() - 0.01)

    with pytest.raises(DeadlineExceeded) as caught:
        await client.request("catalog", "GET", "/status")

    assert caught.value.http_status == 504
    assert upstream.hits["/status"] == 0
    outcome = {"service": "catalog", "method": "GET", "outcome": "deadline_exceeded"}
    assert client.metrics_registry.get_sample_value("flotilla_http_client_requests_total", outcome) == 1


async def test_4xx_and_5xx_answers_are_returned_not_raised(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    not_found = await client.request("catalog", "GET", "/fixed/404")
    server_error = await client.request("catalog", "POST", "/fixed/500")

    assert (not_found.status, server_error.status) == (404, 500)
    assert not_found.json() == {"from": upstream.url}
    assert upstream.hits["/fixed/404"] == 1 and upstream.hits["/fixed/500"] == 1  # 500 is not retried
    assert not_found.headers["Content-Type"].startswith("application/json")


async def test_unknown_service_raises_no_healthy_instance_wrapping_no_instances(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    with pytest.raises(NoHealthyInstance) as caught:
        await client.request("inventory", "GET", "/status")

    assert caught.value.http_status == 503 and caught.value.service == "inventory"
    assert isinstance(caught.value.__cause__, NoInstances)


async def test_a_path_that_is_not_an_encoded_absolute_path_is_refused(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]})

    for path in ("status", "//evil.example/x", "/a b", "http://evil.example/", "/tab\there", "/caf\u00e9", "/nul\x00"):
        with pytest.raises(ValueError, match="path must"):
            await client.request("catalog", "GET", path)
    assert sum(upstream.hits.values()) == 0


async def test_calls_with_unusual_methods_are_counted_under_one_label(make_client, granian_upstream):
    client = await make_client({"catalog": [granian_upstream]})

    for method in ("BREW", "PROPFIND"):
        await client.request("catalog", method, "/echo")

    calls_by_method: dict[str, float] = {}
    for metric in client.metrics_registry.collect():
        for sample in metric.samples:
            if sample.name == "flotilla_http_client_requests_total":
                method = sample.labels["method"]
                calls_by_method[method] = calls_by_method.get(method, 0) + sample.value
    assert calls_by_method == {"OTHER": 2}
