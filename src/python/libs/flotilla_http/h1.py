"""One HTTP/1.1 client connection: an asyncio Protocol whose answers httptools (llhttp) parses.

Why not aiohttp's client: relaying is the gateway's whole job, and aiohttp spends ~190 µs of CPU
per request on its own machinery (request and response objects, tracing hooks, cookie and timer
handling) where this connection spends ~65 µs (src/python/tools/bench/http_clients.py). llhttp
(the parser of Node.js) does the framing: content-length, chunked, read-until-close, 1xx.

A connection carries one exchange at a time. Body chunks are queued as they arrive, and reading
from the socket pauses while more than ``_MAX_BUFFERED`` bytes wait, so a slow reader holds back a
fast upstream instead of filling memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable
from typing import cast

import httptools

_MAX_BUFFERED = 1024 * 1024
_CRLF = b"\r\n"
# Methods whose requests carry a body by definition: an empty one is announced as such.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class ConnectionBroken(Exception):
    """The connection closed or broke before the answer was whole (or the answer was not HTTP)."""


RawHeaders = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterable[bytes] | None


class H1Connection(asyncio.Protocol):
    """One keep-alive connection to one origin; see the module docstring."""

    def __init__(self, host: bytes) -> None:
        self.host = host  # the Host header: "name:port" as the origin was given
        self.idle_since = 0.0
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._error: BaseException | None = None
        # The exchange in progress.
        self._active = False
        self._head: asyncio.Future[None] | None = None
        self._status = 0
        self._headers: RawHeaders = []
        self._informational = False
        self._head_only = False
        self._complete = False
        self._keep_alive = True
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._body_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._writing_paused = False

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def reusable(self) -> bool:
        """Whether the last answer was read whole and the connection may carry another exchange."""
        return not self._closed and not self._active and self._keep_alive

    def close(self) -> None:
        """Drop the connection now, unsent and unread bytes included."""
        self._closed = True
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ exchange

    async def send(self, method: bytes, target: bytes, headers: RawHeaders, body: Body) -> None:
        """Write one request. ``headers`` must not hold host, content-length, transfer-encoding or connection.

        Bytes bodies go out with content-length, in the same write as the head; iterables go out
        chunked as they are produced. Raises ConnectionBroken.
        """
        if self._active or self._closed or self._transport is None:
            raise ConnectionBroken("connection is busy or closed")
        self._start_exchange(head_only=method == b"HEAD")
        head = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.host, _CRLF]
        for name, value in headers:
            head += (name, b": ", value, _CRLF)
        if isinstance(body, bytes):
            if body or method in _BODY_METHODS:
                head += (b"content-length: ", str(len(body)).encode(), _CRLF)
            self._write(b"".join((*head, _CRLF, body)))
            return
        if body is None:
            if method in _BODY_METHODS:
                head.append(b"content-length: 0\r\n")
            self._write(b"".join((*head, _CRLF)))
            return
        self._write(b"".join((*head, b"transfer-encoding: chunked\r\n\r\n")))
        async for chunk in body:
            if chunk:
                self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await self._drain()
        self._write(b"0\r\n\r\n")

    async def read_head(self) -> tuple[int, RawHeaders]:
        """Wait for the answer's status and headers. Raises ConnectionBroken."""
        assert self._head is not None, "read_head before send"
        await self._head
        return self._status, self._headers

    async def read_chunk(self, limit: int) -> bytes:
        """The next piece of the body, at most ``limit`` bytes; b"" once the body is whole."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        chunk = self._chunks.popleft()
        if len(chunk) > limit:
            self._chunks.appendleft(chunk[limit:])
            chunk = chunk[:limit]
        self._buffered -= len(chunk)
        if self._reading_paused and self._buffered <= _MAX_BUFFERED // 2 and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        if not self._chunks and self._complete:
            self._active = False
        return chunk

    def take_whole_body(self) -> bytes | None:
        """The rest of the body if the answer has arrived whole, else None (nothing is taken then)."""
        if not self._complete:
            return None
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._active = False
        return body

    def _start_exchange(self, *, head_only: bool) -> None:
        self._active = True
        self._head = self._loop.create_future()
        self._status = 0
        self._headers = []
        self._head_only = head_only
        self._complete = False
        self._chunks.clear()
        self._buffered = 0

    def _write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        assert self._transport is not None
        self._transport.write(data)

    async def _drain(self) -> None:
        if self._writing_paused:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._error is not None:
            raise self._error

    def _finish(self) -> None:
        self._complete = True
        if not self._chunks:
            self._active = False
        self._wake_body()

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: nobody may be waiting (an idle connection)
        self._wake_body()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _wake_body(self) -> None:
        if self._body_waiter is not None and not self._body_waiter.done():
            self._body_waiter.set_result(None)

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            # Bytes nobody asked for (after a HEAD answer, or garbage): the framing is lost.
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ConnectionBroken(f"malformed HTTP answer: {error}"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too: HTTP/1.1 has no use for a half-closed connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._active and not self._complete:
            if self._head is not None and self._head.done() and self._until_close():
                self._keep_alive = False
                self._finish()  # the end of a read-until-close body
            else:
                detail = f": {exc!r}" if exc else ""
                self._fail(ConnectionBroken(f"connection closed before the answer was whole{detail}"))
        else:
            self._fail(ConnectionBroken("connection closed"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        self._informational = 100 <= status < 200 and status != 101
        if self._informational:
            return  # 103 Early Hints and the like: the real answer follows
        self._status = status
        self._keep_alive = self._parser.should_keep_alive()
        assert self._head is not None
        if not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            # The answer to HEAD has no body whatever its headers say, and llhttp cannot be told
            # so: end the exchange here and never reuse the connection.
            self._keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _MAX_BUFFERED and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_body()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._head_only:
            self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
            self._finish()
