from __future__ import annotations

import time

import pytest

from flotilla_http import BreakerPolicy, BreakerState, CircuitOpen, RetryPolicy
from flotilla_http.breaker import CircuitBreaker

ONE_ATTEMPT = RetryPolicy(max_attempts=1)
POLICY = BreakerPolicy(failure_threshold=3, failure_rate_threshold=None, open_seconds=5.0)


def gauge(client, service):
    return client.metrics_registry.get_sample_value("flotilla_http_client_breaker_state", {"service": service})


def transitions(client, service, from_state, to_state):
    labels = {"service": service, "from_state": from_state, "to_state": to_state}
    return client.metrics_registry.get_sample_value("flotilla_http_client_breaker_transitions_total", labels) or 0


async def test_breaker_opens_after_failures_fails_fast_then_half_opens_and_closes_on_a_successful_probe(
    make_client, upstreams, clock
):
    upstream = await upstreams()
    upstream.status = 503
    client = await make_client({"catalog": [upstream.url]}, retry=ONE_ATTEMPT, breaker=POLICY, clock=clock)

    for _ in range(3):
        assert (await client.request("catalog", "GET", "/status")).status == 503
    assert client.breaker_state("catalog") is BreakerState.OPEN
    assert gauge(client, "catalog") == 2

    started = time.monotonic()
    with pytest.raises(CircuitOpen) as caught:
        await client.request("catalog", "GET", "/status", timeout=1.0)
    assert time.monotonic() - started < 1.0
    assert caught.value.http_status == 503 and caught.value.retry_after == pytest.approx(5.0)
    assert upstream.hits["/status"] == 3  # nothing was sent

    clock.advance(5.0)
    upstream.status = 200
    assert client.breaker_state("catalog") is BreakerState.HALF_OPEN
    assert (await client.request("catalog", "GET", "/status")).status == 200

    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert gauge(client, "catalog") == 0
    assert transitions(client, "catalog", "closed", "open") == 1
    assert transitions(client, "catalog", "open", "half_open") == 1
    assert transitions(client, "catalog", "half_open", "closed") == 1


async def test_a_failed_probe_opens_the_circuit_again(make_client, upstreams, clock):
    upstream = await upstreams()
    upstream.status = 503
    client = await make_client({"catalog": [upstream.url]}, retry=ONE_ATTEMPT, breaker=POLICY, clock=clock)
    for _ in range(3):
        await client.request("catalog", "GET", "/status")
    clock.advance(5.0)

    probe = await client.request("catalog", "GET", "/status")

    assert probe.status == 503 and upstream.hits["/status"] == 4  # the probe went through, and failed
    assert client.breaker_state("catalog") is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        await client.request("catalog", "GET", "/status")
    assert transitions(client, "catalog", "half_open", "open") == 1


async def test_4xx_answers_do_not_open_the_circuit(make_client, upstreams, clock):
    upstream = await upstreams()
    client = await make_client({"catalog": [upstream.url]}, retry=ONE_ATTEMPT, breaker=POLICY, clock=clock)

    for _ in range(10):
        assert (await client.request("catalog", "GET", "/fixed/404")).status == 404

    assert client.breaker_state("catalog") is BreakerState.CLOSED


async def test_circuits_are_per_service(make_client, upstreams, clock):
    failing, healthy = await upstreams(), await upstreams()
    failing.status = 500
    client = await make_client(
        {"catalog": [failing.url], "inventory": [healthy.url]}, retry=ONE_ATTEMPT, breaker=POLICY, clock=clock
    )
    for _ in range(3):
        await client.request("catalog", "GET", "/status")

    assert client.breaker_state("catalog") is BreakerState.OPEN
    assert (await client.request("inventory", "GET", "/status")).status == 200


def test_failure_rate_over_a_full_window_opens_a_circuit_that_never_fails_five_times_in_a_row(clock):
    breaker = CircuitBreaker("catalog", BreakerPolicy(failure_rate_threshold=0.5, window_size=10), clock=clock)

    for call in range(9):
        breaker.record(breaker.acquire(), failed=call % 2 == 0)
    assert breaker.state is BreakerState.CLOSED  # 5 of 9, window not full yet
    breaker.record(breaker.acquire(), failed=False)

    assert breaker.state is BreakerState.OPEN  # 5 of the last 10 failed


def test_half_open_lets_only_max_calls_probes_through_and_ignores_outcomes_from_before(clock):
    breaker = CircuitBreaker("catalog", BreakerPolicy(failure_threshold=1, open_seconds=2.0), clock=clock)
    before_opening = breaker.acquire()
    breaker.record(breaker.acquire(), failed=True)
    clock.advance(2.0)

    probe = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.record(before_opening, failed=False)  # a slow answer from before: no evidence now
    assert breaker.state is BreakerState.HALF_OPEN

    breaker.abandon(probe)  # e.g. the caller was cancelled: the slot is free again
    breaker.record(breaker.acquire(), failed=False)
    assert breaker.state is BreakerState.CLOSED
