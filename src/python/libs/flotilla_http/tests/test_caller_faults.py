"""Failures the caller causes (its body, its disconnect) never count against the upstream's health."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flotilla_http import BreakerPolicy, BreakerState, RetryPolicy, UpstreamConnectError, UpstreamTimeout

ONE_ATTEMPT = RetryPolicy(max_attempts=1)
TRIP_ON_THREE = BreakerPolicy(failure_threshold=3, failure_rate_threshold=None, open_seconds=5.0)
KIB_700 = 700 * 1024


class CallerWentAway(Exception):
    """What a server's body source raises when its own client disconnects."""


@pytest.mark.parametrize(
    "failure",
    [CallerWentAway("client disconnected"), TimeoutError("caller's body too slow"), ConnectionResetError("reset")],
    ids=["its own error", "a TimeoutError", "a ConnectionError"],
)
async def test_a_streamed_body_whose_source_fails_neither_opens_the_breaker_nor_ejects_the_instance(
    make_client, upstreams, failure
):
    upstream = await upstreams()
    client = await make_client(
        {"catalog": [upstream.url]},
        retry=ONE_ATTEMPT,
        breaker=TRIP_ON_THREE,
        balancer_options={"eject_after_failures": 3},
    )

    async def body():
        yield b"x" * 1000
        raise failure

    for _ in range(10):
        with pytest.raises(type(failure)) as caught:
            async with client.stream("catalog", "POST", "/status", body=body()):
                pass
        assert caught.value is failure  # the caller's own exception, not an upstream error

    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert (await client.request("catalog", "GET", "/status")).status == 200  # not ejected either


async def test_a_streamed_body_too_slow_for_the_deadline_times_out_without_blaming_the_upstream(make_client, upstreams):
    upstream = await upstreams()
    client = await make_client(
        {"catalog": [upstream.url]},
        retry=ONE_ATTEMPT,
        breaker=TRIP_ON_THREE,
        balancer_options={"eject_after_failures": 3},
    )
    never = asyncio.Event()

    async def body():
        yield b"x" * 1000
        await never.wait()  # the caller's own client sends nothing more
        yield b"never sent"

    for _ in range(4):
        with pytest.raises(UpstreamTimeout, match="request body"):
            async with client.stream("catalog", "POST", "/status", body=body(), timeout=0.1):
                pass

    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert (await client.request("catalog", "GET", "/status")).status == 200  # not ejected either


async def test_an_upstream_that_answers_without_reading_the_body_is_not_blamed_and_its_answer_is_used(
    make_client, granian_upstream
):
    # granian answers GET /healthz without reading the body, then closes. When its close reaches
    # us as a reset, the kernel drops the answer with it (no lingering close): that race is the
    # server's to lose, so such a call may fail, but never against the upstream's health; and when
    # the answer gets through (almost always) it is the one returned.
    client = await make_client(
        {"catalog": [granian_upstream]},
        retry=ONE_ATTEMPT,
        breaker=TRIP_ON_THREE,
        balancer_options={"eject_after_failures": 3},
    )

    async def body():
        for _ in range(KIB_700 // 1024):
            yield b"x" * 1024

    answered = 0
    for _ in range(30):
        try:
            async with client.stream("catalog", "GET", "/healthz", body=body()) as response:
                assert response.status == 200
                assert await response.read() == b'{"status":"ok"}'
                answered += 1
        except UpstreamConnectError as error:
            assert "while the request body was being sent" in str(error)

    assert answered > 0  # before: none of them, each "connection lost before an answer"
    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert (await client.request("catalog", "GET", "/healthz")).status == 200  # not ejected either


async def test_a_breaker_opening_and_closing_is_logged_with_the_service(make_client, upstreams, clock, caplog):
    upstream = await upstreams()
    upstream.status = 503
    client = await make_client({"catalog": [upstream.url]}, retry=ONE_ATTEMPT, breaker=TRIP_ON_THREE, clock=clock)
    caplog.set_level(logging.INFO, logger="flotilla_http")

    for _ in range(3):
        await client.request("catalog", "GET", "/status")
    opened = [r for r in caplog.records if r.levelno == logging.WARNING and "catalog" in r.getMessage()]
    assert len(opened) == 1 and "open" in opened[0].getMessage()

    clock.advance(5.0)
    upstream.status = 200
    await client.request("catalog", "GET", "/status")
    closed = [r for r in caplog.records if r.levelno == logging.INFO and "catalog" in r.getMessage()]
    assert any("closed" in record.getMessage() for record in closed)
