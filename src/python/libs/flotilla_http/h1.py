"""One HTTP/1.1 client connection: an asyncio Protocol whose answers httptools (llhttp) parses.

Why not aiohttp's client: relaying is the gateway's whole job, and aiohttp spends ~190 µs of CPU
per request on its own machinery (request and response objects, tracing hooks, cookie and timer
handling) where this connection spends ~65 µs (src/python/tools/bench/http_clients.py). llhttp
(the parser of Node.js) does the framing: content-length, chunked, read-until-close, 1xx.

A connection carries one exchange at a time. Body chunks are queued as they arrive, and reading
from the socket pauses while more than ``_MAX_BUFFERED`` bytes wait, so a slow reader holds back a
fast upstream instead of filling memory.

What llhttp lets through, this refuses (a proxy's parser is where response splitting lives), so
that it never takes an answer a strict reference (h11, tests/test_h1_reference.py) rejects:

- bytes after a whole answer (a second answer, garbage): the first answer stands, the connection
  is closed and nobody sees them (blank lines in the same read excepted: llhttp skips them, and
  they frame nothing);
- a head over aiohttp's limits (``MAX_FIELD_SIZE`` per name, value or reason phrase,
  ``MAX_FIELDS`` fields): a malformed answer;
- ``101 Switching Protocols`` (never asked for), a transfer-encoding other than one chunked, a
  status outside 100-599, a reason phrase with controls, bytes before the status line: a
  malformed answer (llhttp itself refuses bad lengths and chunk sizes, and content-length with
  transfer-encoding);
- an answer in HTTP/1.0 is not reused, whatever its connection header says.

An answer that arrives while a streamed request body is still being sent ends the sending (see
``send``), and one the upstream sent just before closing is read even when a write to the closed
connection failed first (see ``connection_lost``).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterable
from typing import cast

import httptools

_MAX_BUFFERED = 1024 * 1024
# aiohttp's limits on an answer's head: a name, a value or the status line's reason over
# MAX_FIELD_SIZE bytes, or more than MAX_FIELDS fields (or trailers), is a malformed answer.
MAX_FIELD_SIZE = 8190
MAX_FIELDS = 128
# llhttp holds a header line until it ends: one still open past "name: value" at their limits can
# only be refused, so it is refused before it fills memory.
_MAX_OPEN_LINE = 2 * MAX_FIELD_SIZE + 4
_REASON = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # RFC 9112's reason-phrase: llhttp lets NUL through
_CRLF = b"\r\n"
# Methods whose requests carry a body by definition: an empty one is announced as such.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class ConnectionBroken(Exception):
    """The connection closed or broke before the answer was whole (or the answer was not HTTP)."""


class _BytesAfterAnswer(Exception):
    """Raised in a parser callback to stop parsing: a message begins after the whole answer."""


class _InformationalEnd(Exception):
    """Raised in a parser callback to stop parsing at the end of a 1xx answer (see data_received)."""


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
        self._headers: RawHeaders = []  # the answer's head as handed out
        self._fields: RawHeaders = []  # the fields being parsed: a head's, then its trailers
        self._informational = False
        self._in_head = False  # between a message's first byte and its headers' end
        self._reason_size = 0
        self._transfer_encoding_seen = False
        self._open_line = 0  # bytes of the head line not ended yet, as far as reads have shown
        self._message_due = False  # the next byte received must begin an answer
        self._head_tail = b""  # the last bytes of a 1xx head that spans reads
        self._answered = False  # the final answer's head has arrived
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
        chunked as they are produced, until the answer's head arrives (the upstream answered
        without waiting for the rest, which is then not sent, and the connection not reused).
        Raises ConnectionBroken.
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
        transport = self._transport
        self._write(b"".join((*head, b"transfer-encoding: chunked\r\n\r\n")))
        async for chunk in body:
            if self._answered or transport.is_closing():
                break
            if chunk:
                self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await self._drain()
        if self._answered or transport.is_closing():
            # The upstream answered before the body was all sent (and may have closed, or stopped
            # reading), or a write failed because it closed (its answer may still be read, see
            # connection_lost): read_head tells which. The rest is not sent; the request is cut
            # short, so the connection cannot carry another.
            self._keep_alive = False
            return
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
        self._message_due = True
        self._answered = False
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
        if self._writing_paused and not self._answered:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._error is not None and not self._answered:
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
        self._wake_drain()

    def _wake_body(self) -> None:
        if self._body_waiter is not None and not self._body_waiter.done():
            self._body_waiter.set_result(None)

    def _wake_drain(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def _refuse(self, error: ConnectionBroken) -> None:
        """The answer is not one to take: fail the exchange and drop the connection."""
        self._keep_alive = False
        self._fail(error)
        self.close()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._active or self._complete:
            # Bytes nobody asked for (after a whole answer, on an idle connection): the framing
            # is lost. Nobody sees them; the answer already whole stands.
            self._keep_alive = False
            self.close()
            return
        if self._message_due:
            # llhttp skips blank lines before an answer; a strict parser does not.
            if not data.startswith(b"H"):
                self._refuse(_malformed(f"{_shown(data[:16])} where an answer should begin"))
                return
            self._message_due = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            # A callback refused the answer (limits, framing), or saw bytes after it.
            if isinstance(error.__context__, _InformationalEnd):
                self._after_informational(data)
            elif isinstance(error.__context__, _BytesAfterAnswer):
                self._keep_alive = False
                self.close()
            elif isinstance(error.__context__, ConnectionBroken):
                self._refuse(error.__context__)
            else:
                self._refuse(ConnectionBroken(f"malformed HTTP answer: {error}"))
            return
        except httptools.HttpParserUpgrade:
            # on_headers_complete refuses 101 first; this is for any other way llhttp upgrades.
            self._refuse(ConnectionBroken("malformed HTTP answer: it switched protocols, which was not asked for"))
            return
        except httptools.HttpParserError as error:
            self._refuse(ConnectionBroken(f"malformed HTTP answer: {error}"))
            return
        if self._in_head:
            # A line still open must not grow past the limits while llhttp holds it.
            line_end = data.rfind(b"\n")
            self._open_line = self._open_line + len(data) if line_end < 0 else len(data) - line_end - 1
            if self._open_line > _MAX_OPEN_LINE:
                self._refuse(_malformed(f"a head line is longer than {_MAX_OPEN_LINE} bytes"))
            else:
                self._head_tail = (self._head_tail + data)[-3:]  # a 1xx head's blank line may straddle reads

    def _after_informational(self, data: bytes) -> None:
        """Parsing stopped at the end of a 1xx head in ``data``: the real answer must begin right
        after its blank line, so parse the rest anew from there (1xx answers are rare)."""
        received = self._head_tail + data
        blank_line = received.find(b"\r\n\r\n")
        if blank_line < 0:
            self._refuse(_malformed("a 1xx head without its blank line"))  # llhttp took a bare LF
            return
        end = blank_line + 4 - len(self._head_tail)
        self._parser = httptools.HttpResponseParser(self)  # stopped by the exception, it takes no more
        self._message_due = True
        if end < len(data):
            self.data_received(data[end:])

    def eof_received(self) -> bool:
        return False  # close our side too: HTTP/1.1 has no use for a half-closed connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake_drain()
        clean_end = exc is None
        if exc is not None and self._active and not self._complete:
            clean_end = self._read_what_is_left()
        if self._active and not self._complete:
            if clean_end and self._head is not None and self._head.done() and self._until_close():
                self._keep_alive = False
                self._finish()  # the end of a read-until-close body
            else:
                detail = f": {exc!r}" if exc else ""
                self._fail(ConnectionBroken(f"connection closed before the answer was whole{detail}"))
        else:
            self._fail(ConnectionBroken("connection closed"))

    def _read_what_is_left(self) -> bool:
        """Parse what the socket still holds; True when that ends with the upstream's clean close.

        A failed write (the upstream closed: it answered early, refusing a body it did not want,
        and the kernel turned our next write into a reset) makes the transport stop reading at
        once, though its answer may be waiting in the socket. The socket is still open here.
        """
        assert self._transport is not None
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            with sock.dup() as copy:  # a plain non-blocking socket on the same connection
                copy.setblocking(False)
                while not self._complete and self._error is None:
                    data = copy.recv(256 * 1024)
                    if not data:
                        return True
                    self.data_received(data)
        except OSError:
            pass  # nothing more to read (EAGAIN), or the reset itself
        return False

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        if self._complete:
            raise _BytesAfterAnswer()  # a second answer (or garbage) in the same read as the first
        self._fields = []
        self._head_tail = b""
        self._in_head = True
        self._reason_size = 0
        self._transfer_encoding_seen = False
        self._open_line = 0

    def on_status(self, reason: bytes) -> None:
        self._reason_size += len(reason)  # llhttp may hand it over in pieces, one per read
        if self._reason_size > MAX_FIELD_SIZE:
            raise _malformed(f"the status line's reason is longer than {MAX_FIELD_SIZE} bytes")
        if not _REASON.fullmatch(reason):
            raise _malformed(f"the status line's reason {_shown(reason)} holds control characters")

    def on_header(self, name: bytes, value: bytes) -> None:
        # On the path of every answer: one test for all that is unusual.
        fields = self._fields
        name_size = len(name)
        if len(fields) >= MAX_FIELDS or name_size > MAX_FIELD_SIZE or len(value) > MAX_FIELD_SIZE or name_size == 17:
            self._check_field(name, value)
        fields.append((name, value))

    def _check_field(self, name: bytes, value: bytes) -> None:
        """Raise ConnectionBroken for a field over the limits or a transfer-encoding not ours."""
        if len(self._fields) >= MAX_FIELDS:
            raise _malformed(f"more than {MAX_FIELDS} header fields")
        if len(name) > MAX_FIELD_SIZE:
            raise _malformed(f"a header name is longer than {MAX_FIELD_SIZE} bytes")
        if len(value) > MAX_FIELD_SIZE:
            raise _malformed(f"header {_shown(name)} is longer than {MAX_FIELD_SIZE} bytes")
        if name.lower() == b"transfer-encoding":
            # llhttp also takes codings it cannot undo ("gzip, chunked") and reads until close
            # when chunked is not last; the only coding a caller of ours can be given is chunked.
            if value.strip(b" \t").lower() != b"chunked" or self._transfer_encoding_seen:
                raise _malformed(f"transfer-encoding {_shown(value)} is not supported, only one chunked is")
            self._transfer_encoding_seen = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        # Trailers, if any, go to a list of their own (limited alike), never handed out.
        self._headers, self._fields = self._fields, []
        status = self._parser.get_status_code()
        if status == 101:
            raise _malformed("the upstream switched protocols (101), which was not asked for")
        if not 100 <= status <= 599:
            raise _malformed(f"status {status:03d} is outside 100-599 (RFC 9110)")
        self._informational = 100 <= status < 200
        if self._informational:
            return  # 103 Early Hints and the like: the real answer follows
        self._status = status
        # HTTP/1.0 keep-alive is an extension some servers get wrong: such a connection is not reused.
        self._keep_alive = self._parser.should_keep_alive() and self._parser.get_http_version() == "1.1"
        self._answered = True
        if self._drain_waiter is not None:
            self._wake_drain()  # a request body still being sent stops: see send
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
            raise _InformationalEnd()
        if not self._head_only:
            self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
            self._finish()


def _malformed(reason: str) -> ConnectionBroken:
    return ConnectionBroken(f"malformed HTTP answer: {reason}")


def _shown(text: bytes) -> str:
    """``text`` for a message: decoded, and cut short when long."""
    shown = text[:64].decode("latin-1")
    return repr(shown + "..." if len(text) > 64 else shown)
