"""Failures the caller causes (its body, its disconnect) never count against the upstream's health."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from flotilla_http import (
    BreakerPolicy,
    BreakerState,
    RequestBodyTimeout,
    RetryPolicy,
    UpstreamConnectError,
    UpstreamError,
)
from flotilla_http.tests.conftest import BOTH_LOOPS

ONE_ATTEMPT = RetryPolicy(max_attempts=1)
TRIP_ON_THREE = BreakerPolicy(failure_threshold=3, failure_rate_threshold=None, open_seconds=5.0)
TRIP_ON_ONE = BreakerPolicy(failure_threshold=1, failure_rate_threshold=None, open_seconds=5.0)
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

    assert outcome_count(client, "POST", "caller_error") == 10  # and counted as the caller's
    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert (await client.request("catalog", "GET", "/status")).status == 200  # not ejected either


async def test_a_streamed_body_too_slow_for_the_deadline_is_the_callers_timeout_not_the_upstreams(
    make_client, upstreams
):
    upstream = await upstreams()
    client = await make_client(
        {"catalog": [upstream.url]},
        retry=ONE_ATTEMPT,
        breaker=TRIP_ON_ONE,
        balancer_options={"eject_after_failures": 1},
    )
    never = asyncio.Event()

    async def body():
        yield b"x" * 1000
        await never.wait()  # the caller's own client sends nothing more
        yield b"never sent"

    # Before: UpstreamTimeout (a 504 blaming the upstream), counted with outcome "timeout".
    with pytest.raises(RequestBodyTimeout, match="request body") as caught:
        async with client.stream("catalog", "POST", "/status", body=body(), timeout=1.5):
            pass

    assert not isinstance(caught.value, UpstreamError) and caught.value.http_status == 408
    assert outcome_count(client, "POST", "caller_error") == 1
    assert client.breaker_state("catalog") is BreakerState.CLOSED
    assert (await client.request("catalog", "GET", "/status")).status == 200  # not ejected either


def outcome_count(client, method: str, outcome: str) -> float:
    labels = {"service": "catalog", "method": method, "outcome": outcome}
    return client.metrics_registry.get_sample_value("flotilla_http_client_requests_total", labels) or 0.0


async def endless_body() -> AsyncIterator[bytes]:
    while True:
        yield b"x" * 1024
        await asyncio.sleep(0)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start loopback servers whose connections ``handler`` serves byte for byte; gives their URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


async def test_a_malformed_answer_while_the_body_is_being_sent_counts_against_the_upstream(make_client, raw_server):
    async def malformed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 abc nonsense\r\n\r\n")
        await writer.drain()
        await reader.read()  # take the body until the client closes
        writer.close()

    client = await make_client({"catalog": [await raw_server(malformed)]}, retry=ONE_ATTEMPT, breaker=TRIP_ON_ONE)

    # Before: taken for a loss while the caller's body was going out, and blamed on nobody.
    with pytest.raises(UpstreamConnectError, match="malformed"):
        async with client.stream("catalog", "POST", "/status", body=endless_body()):
            pass

    assert client.breaker_state("catalog") is BreakerState.OPEN


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a reset (RST), not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@BOTH_LOOPS
async def test_an_early_answer_followed_by_a_reset_is_still_the_answer(make_client, raw_server):
    # The upstream refuses the body at once and resets the connection while the body still comes:
    # the answer it sent first must reach the caller, on either loop.
    async def refuse_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 7\r\n\r\ntoo big")
        await writer.drain()
        reset(writer)

    client = await make_client({"catalog": [await raw_server(refuse_then_reset)]}, retry=ONE_ATTEMPT)
    for _ in range(20):
        async with client.stream("catalog", "POST", "/status", body=endless_body()) as response:
            assert (response.status, await response.read()) == (413, b"too big")
    assert client.breaker_state("catalog") is BreakerState.CLOSED


@BOTH_LOOPS
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


async def test_an_answer_that_comes_before_the_first_chunk_is_not_retried_with_a_spent_body(make_client, raw_server):
    async def unavailable(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    second_hit = asyncio.Event()

    async def second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        second_hit.set()
        writer.close()

    client = await make_client(
        {"catalog": [await raw_server(unavailable), await raw_server(second)]},
        retry=RetryPolicy(max_attempts=2, base_backoff=0.0),
    )
    never = asyncio.Event()

    async def body():
        await never.wait()  # the caller's first chunk never comes; the 503 does
        yield b"x"

    # The wait on the first chunk is cancelled when the 503 comes, which ends the source: a retry
    # would send an empty body in its place (before the race, this call waited for the deadline).
    async with client.stream("catalog", "PUT", "/status", body=body(), timeout=30) as response:
        assert response.status == 503
    assert not second_hit.is_set()
