from __future__ import annotations

import gc
import time
import weakref

import pytest

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.errors import DiscoveryUnavailable, NoInstances
from flotilla_discovery.resolver import StaticResolver
from flotilla_http import (
    BreakerPolicy,
    BreakerState,
    CircuitOpen,
    HttpClient,
    NoHealthyInstance,
    RetryPolicy,
    UpstreamConnectError,
)
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


# ------------------------------------------------------------------ recovery after an outage


def opened(clock, policy=BreakerPolicy(failure_threshold=1, open_seconds=5.0)):
    moves: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "catalog", policy, clock=clock, on_transition=lambda _, old, new: moves.append((old.name, new.name))
    )
    breaker.record(breaker.acquire(), failed=True)
    assert breaker.state is BreakerState.OPEN
    return breaker, moves


def test_a_registration_half_opens_an_open_circuit_at_once(clock):
    breaker, moves = opened(clock)

    breaker.instance_registered()

    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.acquire()  # no waiting out the window: the new instance is worth a probe now
    with pytest.raises(CircuitOpen):
        breaker.acquire()  # still one probe at a time
    breaker.record(probe, failed=False)
    assert breaker.state is BreakerState.CLOSED
    assert moves == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_a_registration_leaves_a_closed_circuit_alone(clock):
    breaker = CircuitBreaker("catalog", BreakerPolicy(failure_threshold=2), clock=clock)
    breaker.record(breaker.acquire(), failed=True)

    breaker.instance_registered()
    breaker.record(breaker.acquire(), failed=True)

    assert breaker.state is BreakerState.OPEN  # the failure streak was not reset


def test_a_registration_frees_the_probe_slot_a_probe_to_a_dead_instance_holds(clock):
    breaker, _ = opened(clock)
    clock.advance(5.0)
    to_the_dead_one = breaker.acquire()  # e.g. waiting for a connect timeout

    breaker.instance_registered()
    to_the_new_one = breaker.acquire()
    breaker.record(to_the_new_one, failed=False)
    breaker.record(to_the_dead_one, failed=True)  # from before the registration: no evidence now

    assert breaker.state is BreakerState.CLOSED


def test_a_probe_that_finds_no_instance_is_given_back_and_the_circuit_stays_half_open(clock):
    breaker, moves = opened(clock)
    clock.advance(5.0)

    breaker.record_no_instance(breaker.acquire(), NoInstances("catalog", "all 2 instances are excluded or ejected"))

    assert breaker.state is BreakerState.HALF_OPEN  # not another whole window before the next probe
    breaker.record(breaker.acquire(), failed=False)
    assert breaker.state is BreakerState.CLOSED
    assert moves == [("CLOSED", "OPEN"), ("OPEN", "HALF_OPEN"), ("HALF_OPEN", "CLOSED")]


def test_finding_no_instance_counts_as_a_failure_while_closed_and_for_a_probe_when_discovery_is_down(clock):
    breaker = CircuitBreaker("catalog", BreakerPolicy(failure_threshold=2, open_seconds=5.0), clock=clock)
    for _ in range(2):
        breaker.record_no_instance(breaker.acquire(), NoInstances("catalog"))
    assert breaker.state is BreakerState.OPEN
    clock.advance(5.0)

    breaker.record_no_instance(breaker.acquire(), DiscoveryUnavailable("catalog", "registry unreachable"))

    assert breaker.state is BreakerState.OPEN  # each try would cost a round trip to the registry


async def test_an_open_circuit_lets_a_call_through_as_soon_as_an_instance_registers(make_client, upstreams, clock):
    upstream = await upstreams()
    upstream.status = 503
    client = await make_client({"catalog": [upstream.url]}, retry=ONE_ATTEMPT, breaker=POLICY, clock=clock)
    for _ in range(3):
        await client.request("catalog", "GET", "/status")
    assert client.breaker_state("catalog") is BreakerState.OPEN

    upstream.status = 200  # restarted, healthy, and registering again; the clock has not moved
    (instance,) = await client.balancer.resolver.instances("catalog")
    client.balancer.instance_registered(instance)

    assert (await client.request("catalog", "GET", "/status")).status == 200
    assert client.breaker_state("catalog") is BreakerState.CLOSED


async def test_a_probe_finding_every_instance_ejected_fails_fast_and_keeps_the_circuit_half_open(
    make_client, dead_url, clock
):
    client = await make_client(
        {"catalog": [dead_url()]},
        retry=ONE_ATTEMPT,
        breaker=POLICY,
        clock=clock,
        balancer_options={"eject_after_failures": 3, "ejection_seconds": 10.0, "clock": clock},
    )
    for _ in range(3):
        with pytest.raises(UpstreamConnectError):
            await client.request("catalog", "GET", "/status")
    assert client.breaker_state("catalog") is BreakerState.OPEN
    clock.advance(5.0)

    for _ in range(3):
        with pytest.raises(NoHealthyInstance):  # fast, and not a CircuitOpen for another window
            await client.request("catalog", "GET", "/status")

    assert client.breaker_state("catalog") is BreakerState.HALF_OPEN


async def test_the_probe_goes_to_the_instance_that_registered_not_to_a_dead_one_still_listed(
    make_client, upstreams, dead_url, clock
):
    upstream = await upstreams()
    upstream.status = 503
    client = await make_client(
        {"catalog": [dead_url(), upstream.url]},
        retry=ONE_ATTEMPT,
        breaker=BreakerPolicy(failure_threshold=4, failure_rate_threshold=None, open_seconds=5.0),
        clock=clock,
        balancer_options={"eject_after_failures": 3, "clock": clock},
    )
    for _ in range(2):  # round robin: the dead instance, then the failing one, twice
        with pytest.raises(UpstreamConnectError):
            await client.request("catalog", "GET", "/status")
        assert (await client.request("catalog", "GET", "/status")).status == 503
    assert client.breaker_state("catalog") is BreakerState.OPEN  # and the dead one, next in turn, not ejected

    upstream.status = 200
    returned = next(i for i in await client.balancer.resolver.instances("catalog") if i.url == upstream.url)
    client.balancer.instance_registered(returned)

    assert (await client.request("catalog", "GET", "/status")).status == 200
    assert client.breaker_state("catalog") is BreakerState.CLOSED


async def test_a_retry_that_finds_no_instance_left_is_not_counted_as_another_failure(make_client, dead_url, clock):
    client = await make_client(
        {"catalog": [dead_url()]},
        retry=RetryPolicy(max_attempts=3, base_backoff=0.0),
        breaker=BreakerPolicy(failure_threshold=2, failure_rate_threshold=None, open_seconds=5.0),
        clock=clock,
        balancer_options={"eject_after_failures": 1, "ejection_seconds": 10.0, "clock": clock},
    )

    # One attempt, refused (the instance is ejected); the retry finds nothing to call and sends nothing.
    with pytest.raises(UpstreamConnectError):
        await client.request("catalog", "GET", "/status")

    assert client.breaker_state("catalog") is BreakerState.CLOSED  # one failure of the two that open it


async def test_a_closed_client_leaves_nothing_behind_in_a_balancer_that_outlives_it(upstreams, clock):
    upstream = await upstreams()
    balancer = Balancer(StaticResolver({"catalog": [upstream.url]}))
    client = HttpClient(balancer, retry=ONE_ATTEMPT, clock=clock)
    await client.start()
    assert (await client.request("catalog", "GET", "/status")).status == 200  # its breaker listens to registrations

    await client.close()
    gone = weakref.ref(client)
    del client
    gc.collect()

    assert gone() is None
