from __future__ import annotations

import random

import pytest

from flotilla_http import BreakerPolicy, RetryPolicy, UpstreamConnectError

FAST = RetryPolicy(max_attempts=3, base_backoff=0.001, max_backoff=0.002)
NO_BREAKER = BreakerPolicy(failure_threshold=10**6, failure_rate_threshold=None)


def sample(client, name, **labels):
    return client.metrics_registry.get_sample_value(name, labels) or 0


async def test_get_is_retried_on_the_live_instance_when_the_first_refuses_connections_and_the_dead_one_is_ejected(
    make_client, upstreams, dead_url
):
    alive = await upstreams()
    dead = dead_url()
    client = await make_client({"catalog": [dead, alive.url]}, retry=FAST, balancer_options={"eject_after_failures": 3})

    responses = [await client.request("catalog", "GET", "/status") for _ in range(6)]

    assert [r.status for r in responses] == [200] * 6
    assert {r.instance.url for r in responses} == {alive.url}
    # Round robin sent calls 1, 3 and 5 to the dead instance first: three connect failures eject it.
    assert sample(client, "flotilla_http_client_retries_total", service="catalog", reason="connect_error") == 3
    chosen = {(await client.balancer.choose("catalog")).url for _ in range(6)}
    assert chosen == {alive.url}


async def test_post_is_not_retried_after_a_503(make_client, upstreams):
    first, second = await upstreams(), await upstreams()
    first.status = second.status = 503
    client = await make_client({"orders": [first.url, second.url]}, retry=FAST)

    response = await client.request("orders", "POST", "/status", json={"id": 1})

    assert response.status == 503
    assert first.hits["/status"] + second.hits["/status"] == 1


async def test_post_is_retried_on_another_instance_when_the_connection_is_refused(make_client, upstreams, dead_url):
    alive = await upstreams()
    client = await make_client({"orders": [dead_url(), alive.url]}, retry=FAST)

    response = await client.request("orders", "POST", "/status", content=b"order-1")

    assert response.status == 200 and response.instance.url == alive.url
    assert alive.bodies == [b"order-1"]


async def test_post_marked_idempotent_is_retried_after_a_503(make_client, upstreams):
    failing, healthy = await upstreams(), await upstreams()
    failing.status = 503
    client = await make_client({"orders": [failing.url, healthy.url]}, retry=FAST)

    response = await client.request("orders", "POST", "/status", json={}, idempotent=True)

    assert response.status == 200 and response.instance.url == healthy.url


async def test_get_is_retried_after_503_up_to_max_attempts_and_the_last_answer_is_returned(make_client, upstreams):
    first, second = await upstreams(), await upstreams()
    first.status = second.status = 503
    client = await make_client({"catalog": [first.url, second.url]}, retry=FAST, breaker=NO_BREAKER)

    response = await client.request("catalog", "GET", "/status")

    assert response.status == 503
    assert first.hits["/status"] + second.hits["/status"] == 3
    assert first.hits["/status"] >= 1 and second.hits["/status"] >= 1
    assert sample(client, "flotilla_http_client_retries_total", service="catalog", reason="status_503") == 2


async def test_when_every_instance_refuses_connections_the_call_fails_with_upstream_connect_error(
    make_client, dead_url
):
    client = await make_client({"orders": [dead_url(), dead_url()]}, retry=FAST)

    with pytest.raises(UpstreamConnectError) as caught:
        await client.request("orders", "POST", "/status")

    assert caught.value.http_status == 502 and caught.value.service == "orders"


async def test_retry_budget_stops_retries_when_a_whole_service_fails_and_refills_with_time(
    make_client, upstreams, clock
):
    upstream = await upstreams()
    upstream.status = 503
    policy = RetryPolicy(max_attempts=3, base_backoff=0, budget_ratio=0.2, budget_min_per_second=0, budget_window=10)
    client = await make_client({"catalog": [upstream.url]}, retry=policy, breaker=NO_BREAKER, clock=clock)

    for _ in range(50):
        assert (await client.request("catalog", "GET", "/status")).status == 503

    # Without a budget: 150 requests. With it, retries add at most 20% of the 50 calls.
    assert upstream.hits["/status"] == 60
    assert sample(client, "flotilla_http_client_retries_denied_total", service="catalog") > 0

    upstream.hits.clear()
    for _ in range(4):
        await client.request("catalog", "GET", "/status")
    assert upstream.hits["/status"] == 4  # spent: no retries at all

    clock.advance(11)  # the window has moved past all of it
    await client.request("catalog", "GET", "/status")
    assert upstream.hits["/status"] == 4 + 1  # 1 call deposits 0.2 tokens: not enough for a retry
    policy_with_reserve = RetryPolicy(max_attempts=3, base_backoff=0, budget_min_per_second=1, budget_window=10)
    reserved = await make_client(
        {"catalog": [upstream.url]}, retry=policy_with_reserve, breaker=NO_BREAKER, clock=clock
    )
    upstream.hits.clear()
    for _ in range(20):
        await reserved.request("catalog", "GET", "/status")
    # 20 calls + (reserve 1/s * 10 s + 20% of 20 calls) retries.
    assert upstream.hits["/status"] == 20 + 10 + 4


async def test_no_retry_is_made_past_the_deadline(make_client, upstreams):
    upstream = await upstreams()
    upstream.status = 503
    slow_backoff = RetryPolicy(max_attempts=3, base_backoff=30, max_backoff=30)
    # The backoff is drawn from [0, 30 s]; this seed draws one that overruns a 1 s deadline, so the
    # retry must not even start waiting.
    assert random.Random(1).uniform(0, 30) > 1
    client = await make_client(
        {"catalog": [upstream.url]}, retry=slow_backoff, breaker=NO_BREAKER, rng=random.Random(1)
    )

    response = await client.request("catalog", "GET", "/status", timeout=1.0)

    assert response.status == 503 and upstream.hits["/status"] == 1


async def test_a_get_that_times_out_per_try_is_retried_on_another_instance_within_the_deadline(make_client, upstreams):
    slow, fast = await upstreams(), await upstreams()
    slow.delay = 30
    per_try = RetryPolicy(max_attempts=2, base_backoff=0.001, max_backoff=0.002, per_try_timeout=0.2)
    client = await make_client({"catalog": [slow.url, fast.url]}, retry=per_try)

    response = await client.request("catalog", "GET", "/status", timeout=5.0)

    assert response.status == 200 and response.instance.url == fast.url
    assert slow.hits["/status"] == 1
    assert sample(client, "flotilla_http_client_retries_total", service="catalog", reason="timeout") == 1
