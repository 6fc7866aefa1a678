"""The HTTP/1.1 transport against a real socket server that answers byte for byte as each test says."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from flotilla_http.h1 import ConnectionBroken, MalformedAnswer
from flotilla_http.pool import ConnectFailed, ConnectionPool, Origin
from flotilla_http.tests.conftest import BOTH_LOOPS
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.waiting import eventually

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """A loopback server: for each request head it reads, ``answer`` writes whatever it likes."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None

    @property
    def origin(self) -> Origin:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return Origin.parse(f"http://127.0.0.1:{port}")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                await self.answer(head, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Answer], Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def start(answer: Answer) -> RawUpstream:
        upstream = RawUpstream(answer)
        upstream.server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        assert upstream.server is not None
        upstream.server.close()


@pytest.fixture
async def make_pool() -> AsyncIterator[Callable[..., ConnectionPool]]:
    """ConnectionPool(**options), each closed when the test ends, whether it passed or not."""
    pools: list[ConnectionPool] = []

    def make(**options: Any) -> ConnectionPool:
        pools.append(ConnectionPool(**options))
        return pools[-1]

    yield make
    for pool in pools:
        await pool.close()


def fixed(*answers: bytes, close: bool = False) -> Answer:
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        for part in answers:
            writer.write(part)
            await writer.drain()
        if close:
            writer.close()

    return answer


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def get(pool: ConnectionPool, origin: Origin, method: bytes = b"GET") -> tuple[int, bytes]:
    answer = await pool.request(origin, method, b"/x", [(b"accept", b"*/*")], None)
    try:
        return answer.status, await answer.read()
    finally:
        answer.release()


async def test_a_connection_is_reused_for_the_next_request(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(OK))
    pool = make_pool()
    assert [await get(pool, upstream.origin) for _ in range(3)] == [(200, b"ok")] * 3
    assert upstream.connections == 1
    assert upstream.heads[0].startswith(b"GET /x HTTP/1.1\r\nhost: 127.0.0.1:")


async def test_a_chunked_answer_is_put_together(raw_upstream, make_pool):
    upstream = await raw_upstream(
        fixed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"5\r\nhello\r\n", b"6\r\n world\r\n0\r\n\r\n")
    )
    pool = make_pool()
    assert await get(pool, upstream.origin) == (200, b"hello world")
    assert await get(pool, upstream.origin) == (200, b"hello world")
    assert upstream.connections == 1


async def test_an_answer_without_a_length_ends_when_the_upstream_closes(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 200 OK\r\n\r\n", b"all of ", b"it", close=True))
    pool = make_pool()
    assert await get(pool, upstream.origin) == (200, b"all of it")
    assert await get(pool, upstream.origin) == (200, b"all of it")
    assert upstream.connections == 2


async def test_an_answer_cut_short_raises_connection_broken(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", close=True))
    pool = make_pool()
    with pytest.raises(ConnectionBroken, match="before the answer was whole"):
        await get(pool, upstream.origin)
    assert pool.open_connections == 0


async def test_informational_answers_are_skipped(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n", OK))
    pool = make_pool()
    assert await get(pool, upstream.origin) == (200, b"ok")


async def test_the_answer_to_head_has_no_body_whatever_its_length_says(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"))
    pool = make_pool()
    assert await get(pool, upstream.origin, b"HEAD") == (200, b"")


async def test_a_malformed_answer_raises_connection_broken(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 abc nonsense\r\n\r\n"))
    pool = make_pool()
    with pytest.raises(ConnectionBroken, match="malformed"):
        await get(pool, upstream.origin)


async def test_a_body_left_half_read_costs_its_connection(raw_upstream, make_pool):
    big = b"x" * 100_000
    upstream = await raw_upstream(fixed(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(big), big)))
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert len(await answer.read_chunk(1000)) == 1000
    answer.release()
    assert pool.open_connections == 0
    assert (await get(pool, upstream.origin))[1] == big
    assert upstream.connections == 2


async def test_requests_beyond_the_limit_wait_for_a_connection(raw_upstream, make_pool):
    async def slow(head: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        writer.write(OK)

    upstream = await raw_upstream(slow)
    pool = make_pool(limit=2)
    answers = await asyncio.gather(*(get(pool, upstream.origin) for _ in range(8)))
    assert answers == [(200, b"ok")] * 8
    assert upstream.most_open == 2


async def test_a_connection_idle_too_long_is_not_reused(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(OK))
    now = [1000.0]
    pool = make_pool(idle_timeout=15.0, clock=lambda: now[0])
    await get(pool, upstream.origin)
    now[0] += 14.9
    await get(pool, upstream.origin)
    assert upstream.connections == 1  # idle for less than the timeout: reused
    now[0] += 15.0
    await get(pool, upstream.origin)
    assert upstream.connections == 2


async def test_a_connection_the_upstream_closed_while_idle_is_not_reused(raw_upstream, make_pool):
    upstream = await raw_upstream(
        fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", close=True)
    )
    pool = make_pool()
    assert await get(pool, upstream.origin) == (200, b"ok")
    assert await get(pool, upstream.origin) == (200, b"ok")
    assert upstream.connections == 2


async def test_bodies_are_framed_by_length_or_in_chunks(raw_upstream, make_pool):
    received: list[bytes] = []

    async def echo_head(head: bytes, writer: asyncio.StreamWriter) -> None:
        received.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        writer.close()

    upstream = await raw_upstream(echo_head)
    pool = make_pool()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b""
        yield b"bc"

    for body in (b"payload", b"", chunks()):
        answer = await pool.request(upstream.origin, b"POST", b"/in", [], body)
        answer.release()
    assert b"content-length: 7\r\n" in received[0]
    assert b"content-length: 0\r\n" in received[1]
    assert b"transfer-encoding: chunked\r\n" in received[2]


async def test_a_refused_connect_raises_connect_failed(make_pool):
    pool = make_pool()
    with pytest.raises(ConnectFailed, match="cannot connect"):
        await pool.request(Origin.parse(f"http://127.0.0.1:{free_port()}"), b"GET", b"/", [], None)
    assert pool.open_connections == 0


def test_origins_keep_a_base_path_and_name_their_host_as_http_wants():
    origin = Origin.parse("http://[::1]:8080/base/")
    assert (origin.host, origin.port, origin.base_path, origin.host_header) == ("::1", 8080, b"/base", b"[::1]:8080")
    assert Origin.parse("https://shop.example").host_header == b"shop.example"
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://x")
    with pytest.raises(ValueError, match="base path"):
        Origin.parse("http://shop.example/a b")


EVIL = b"HTTP/1.1 302 Found\r\nlocation: http://evil\r\ncontent-length: 4\r\n\r\nevil"


async def test_an_answer_followed_by_a_second_one_gives_the_first_and_costs_the_connection(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(OK + EVIL))
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert (answer.status, answer.headers, await answer.read()) == (200, [(b"content-length", b"2")], b"ok")
    answer.release()
    assert pool.open_connections == 0  # not pooled: its framing is lost
    assert await get(pool, upstream.origin) == (200, b"ok")
    assert upstream.connections == 2


async def test_bytes_after_a_whole_answer_close_the_connection_even_in_a_later_read(raw_upstream, make_pool):
    answer_read = asyncio.Event()

    async def answer_then_more(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)
        await writer.drain()
        await answer_read.wait()  # the client has the whole answer: what follows comes in a later read
        writer.write(EVIL)
        await writer.drain()

    upstream = await raw_upstream(answer_then_more)
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert (answer.status, await answer.read()) == (200, b"ok")
    answer_read.set()
    await eventually(upstream_closed(upstream), what="the client closing the connection")
    answer.release()
    assert pool.open_connections == 0


def upstream_closed(upstream: RawUpstream) -> Callable[[], Awaitable[bool]]:
    async def closed() -> bool:
        return upstream.connections > 0 and upstream.open_now == 0

    return closed


def header_lines(count: int, value_size: int) -> bytes:
    return b"".join(b"x-%d: %b\r\n" % (index, b"v" * value_size) for index in range(count))


@pytest.mark.parametrize(
    ("head", "refusal"),
    [
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"v" * 8191 + b"\r\n", "header 'x-big' is longer than 8190 bytes"),
        (b"HTTP/1.1 200 OK\r\n" + b"n" * 8191 + b": v\r\n", "is longer than 8190 bytes"),
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"v" * (8 << 20) + b"\r\n", "longer than"),
        (b"HTTP/1.1 200 " + b"r" * 8191 + b"\r\n", "status line.s reason is longer than 8190 bytes"),
        (b"HTTP/1.1 200 OK\r\n" + header_lines(129, 1), "more than 128 header fields"),
        (b"HTTP/1.1 200 OK\r\n" + header_lines(100_000, 1), "more than 128 header fields"),
        (b"HTTP/1.1 200 OK\r\n" + header_lines(9, 8000), "the head .* is longer than 65536 bytes"),
    ],
    ids=["long value", "long name", "8 MiB value", "long reason", "129 fields", "100000 fields", "72 KB head"],
)
async def test_an_answer_head_over_the_limits_is_refused_and_costs_the_connection(
    raw_upstream, make_pool, head, refusal
):
    upstream = await raw_upstream(fixed(head + b"content-length: 2\r\n\r\nok"))
    pool = make_pool()
    with pytest.raises(ConnectionBroken, match=f"malformed HTTP answer: .*{refusal}"):
        await get(pool, upstream.origin)
    assert pool.open_connections == 0


async def test_an_answer_head_at_the_limits_is_taken(raw_upstream, make_pool):
    # A reason and values of 8190 bytes, 128 fields (one of them the content-length), and 64 KiB
    # in all, as MAX_HEAD_SIZE counts: each field's name and value, and 4 bytes for ": " and CRLF.
    fields = header_lines(6, 8190) + b"".join(b"x-%03d: v\r\n" % index for index in range(120))
    pad = 65536 - (8190 + 6 * (3 + 8190 + 4) + 120 * (5 + 1 + 4) + (14 + 1 + 4) + (5 + 4))
    head = b"HTTP/1.1 200 " + b"r" * 8190 + b"\r\n" + fields + b"x-pad: " + b"p" * pad + b"\r\n"
    upstream = await raw_upstream(fixed(head + b"content-length: 2\r\n\r\nok"))
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert (answer.status, len(answer.headers), await answer.read()) == (200, 128, b"ok")
    answer.release()


async def test_switching_protocols_fails_the_exchange_cleanly(raw_upstream, make_pool):
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: loop_errors.append(context))
    upstream = await raw_upstream(
        fixed(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\x81\x02hi")
    )
    pool = make_pool()
    with pytest.raises(ConnectionBroken, match="switched protocols"):
        await get(pool, upstream.origin)
    assert pool.open_connections == 0
    assert loop_errors == []  # nothing escaped from data_received


def chunked(*parts: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"".join(parts)


async def endless(prefix: bytes, writer: asyncio.StreamWriter) -> None:
    """Write ``prefix``, then the same line forever: nothing ever ends it."""
    writer.write(prefix)
    piece = b"a" * 65536
    while not writer.is_closing():
        writer.write(piece)
        await writer.drain()


@pytest.mark.parametrize(
    "prefix",
    [
        chunked(b"2\r\nok\r\n0\r\nx-trailer: "),
        chunked(b"2\r\nok\r\n0\r\n"),
        chunked(b"2;ext="),
        b"HTTP/1.1 200 OK\r\nx-value: ",
    ],
    ids=["a trailer's value", "a trailer's name", "a chunk extension", "a header's value"],
)
async def test_a_line_that_never_ends_is_refused_before_it_fills_memory(raw_upstream, make_pool, prefix):
    # Before: an unended trailer (or chunk extension) line grew in llhttp's buffer without bound.
    upstream = await raw_upstream(lambda head, writer: endless(prefix, writer))
    pool = make_pool()
    with pytest.raises(MalformedAnswer, match="a line is longer than"):
        async with asyncio.timeout(30):  # a guard, not the assertion: before, the read never ended
            await get(pool, upstream.origin)
    assert pool.open_connections == 0


async def test_trailers_over_the_head_budget_are_refused(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(chunked(b"2\r\nok\r\n0\r\n", header_lines(9, 8000), b"\r\n")))
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    with pytest.raises(MalformedAnswer, match="trailers.* longer than 65536 bytes"):
        await answer.read()


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    "reads",
    [
        [CONTINUE + CONTINUE + OK],
        [CONTINUE + b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n" + CONTINUE + OK],
        [CONTINUE * 10 + OK],
        [CONTINUE + CONTINUE[:-2], b"\r\n" + CONTINUE + OK[:5], OK[5:]],
        [CONTINUE[:-1], b"\n" + CONTINUE, OK],
    ],
    ids=["two in one read", "three kinds", "ten", "across reads", "blank line across reads"],
)
async def test_informational_answers_in_one_read_or_across_reads_are_skipped(raw_upstream, make_pool, reads):
    # Before: a second 1xx in the same read was refused as "on_message_complete callback error".
    upstream = await raw_upstream(fixed(*reads))
    pool = make_pool()
    assert await get(pool, upstream.origin) == (200, b"ok")
    assert await get(pool, upstream.origin) == (200, b"ok")
    assert upstream.connections == 1


async def test_more_than_ten_informational_answers_are_refused(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(CONTINUE * 11 + OK))
    pool = make_pool()
    with pytest.raises(MalformedAnswer, match="more than 10 informational"):
        await get(pool, upstream.origin)


async def test_header_values_lose_their_trailing_whitespace(raw_upstream, make_pool):
    upstream = await raw_upstream(fixed(b"HTTP/1.1 200 OK\r\nx-a: v \t \r\nx-b: \t\r\ncontent-length: 2\r\n\r\nok"))
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert answer.headers == [(b"x-a", b"v"), (b"x-b", b""), (b"content-length", b"2")]
    answer.release()


def reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a reset (RST), not a FIN."""
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@BOTH_LOOPS
async def test_a_body_read_until_close_cut_by_a_reset_is_not_whole(raw_upstream, make_pool):
    # Before: after the transport consumed the reset, recv gave b"" and the cut body was taken whole.
    first_part_read = asyncio.Event()

    async def answer_then_reset(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nokok")
        await writer.drain()
        await first_part_read.wait()
        writer.write(b"MORE")
        await writer.drain()
        reset(writer)

    upstream = await raw_upstream(answer_then_reset)
    pool = make_pool()
    answer = await pool.request(upstream.origin, b"GET", b"/x", [], None)
    assert await answer.read_chunk() == b"okok"
    first_part_read.set()
    with pytest.raises(ConnectionBroken, match="before the answer was whole"):
        await answer.read()
    answer.release()
    assert pool.open_connections == 0


@BOTH_LOOPS
async def test_an_early_answer_is_seen_while_the_caller_is_slow_to_give_the_next_chunk(raw_upstream, make_pool):
    # Before: the answer was looked at only once the caller's next chunk came: never, here.
    refused = b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    upstream = await raw_upstream(fixed(refused))
    pool = make_pool()
    never = asyncio.Event()
    source_closed = asyncio.Event()

    async def stalling_body() -> AsyncIterator[bytes]:
        try:
            yield b"x" * 100
            await never.wait()  # the caller's own client sends nothing more
            yield b"never sent"
        finally:
            source_closed.set()

    async with asyncio.timeout(30):  # a guard, not the assertion: before, this waited forever
        answer = await pool.request(upstream.origin, b"POST", b"/x", [], stalling_body())
        assert (answer.status, await answer.read()) == (413, b"")
        answer.release()
        await source_closed.wait()  # the wait on the source was cancelled, not left behind
    assert pool.open_connections == 0
