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
  ``MAX_FIELDS`` fields) or over ``MAX_HEAD_SIZE`` in all, trailers alike; any line (a head's, a
  chunk size's, a trailer's) that stays open past ``_MAX_OPEN_LINE`` bytes, before llhttp holds
  more of it; more than ``MAX_INFORMATIONAL`` 1xx answers before the final one: a malformed answer;
- ``101 Switching Protocols`` (never asked for), a transfer-encoding other than one chunked, a
  status outside 100-599, a reason phrase with controls, bytes before the status line: a
  malformed answer (llhttp itself refuses bad lengths and chunk sizes, and content-length with
  transfer-encoding);
- an answer in HTTP/1.0 is not reused, whatever its connection header says;
- an answer read until close ends only with a clean close (FIN): one cut by a reset is not whole.

Every answer to HEAD costs its connection: llhttp cannot be told that such an answer has no body,
so the exchange ends at its head and whatever follows could not be framed.

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
# And a budget for the whole head (reason, names, values, 4 bytes per field for ": " and CRLF),
# trailers apart: h11 allows 16 KiB, nginx 4-8 KiB from an upstream by default.
MAX_HEAD_SIZE = 64 * 1024
# llhttp holds an unfinished line (a header's, a chunk size's, a trailer's) until it ends, calling
# back nothing: bytes fed since the last callback past "name: value" at their limits (plus room
# for whitespace) can only be refused, so they are refused before they fill memory.
_MAX_OPEN_LINE = 2 * MAX_FIELD_SIZE + 64
# 1xx answers before the final one: each is parsed anew, so a flood of them must end.
MAX_INFORMATIONAL = 10
# At most this much is read from the socket after the transport stopped (see _read_what_is_left).
_MAX_LEFT_TO_READ = _MAX_BUFFERED
_REASON = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # RFC 9112's reason-phrase: llhttp lets NUL through
_CRLF = b"\r\n"
# Methods whose requests carry a body by definition: an empty one is announced as such.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})


class ConnectionBroken(Exception):
    """The connection closed or broke before the answer was whole (or the answer was not HTTP)."""


class MalformedAnswer(ConnectionBroken):
    """The upstream's answer breaks HTTP/1.1 framing or this module's limits: the upstream's fault."""


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
        self._informational_seen = 0  # 1xx answers in this exchange
        self._in_head = False  # between a message's first byte and its headers' end
        self._head_size = 0  # bytes of the head (or trailers) parsed so far, as MAX_HEAD_SIZE counts
        self._transfer_encoding_seen = False
        self._progress = False  # a parser callback ran during the last feed
        self._unparsed = 0  # bytes fed since the last parser callback: an open line llhttp holds
        self._stop: BaseException | None = None  # why a callback stopped the parser
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
        without waiting for the rest, which is then not sent, and the connection not reused):
        the answer is seen even while the iterable is slow to give its next chunk. What the
        iterable raises comes out as it is. A HEAD request's connection is never reused (see the
        module docstring). Raises ConnectionBroken.
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
        answer_head = self._head
        assert answer_head is not None
        self._write(b"".join((*head, b"transfer-encoding: chunked\r\n\r\n")))
        # The body is sent by a task of its own, raced against the answer's head: an upstream that
        # answers early (413) is heard at once, not once the caller gives its next chunk.
        sending = self._loop.create_task(self._send_chunks(body, transport))
        try:
            await asyncio.wait((sending, answer_head), return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished = sending.done()
            if not finished:
                sending.cancel()
                # Let the cancellation reach the body's source before going on: the caller decides
                # by what it did to the source whether another attempt may send it.
                await asyncio.wait((sending,))
                _retrieved(sending)
        if finished:
            sending.result()  # what the body source raised, or ConnectionBroken from a write
        if self._answered or transport.is_closing():
            # The upstream answered before the body was all sent (and may have closed, or stopped
            # reading), or a write failed because it closed (its answer may still be read, see
            # connection_lost): read_head tells which. The rest is not sent; the request is cut
            # short, so the connection cannot carry another.
            self._keep_alive = False
            return
        self._write(b"0\r\n\r\n")

    async def _send_chunks(self, body: AsyncIterable[bytes], transport: asyncio.Transport) -> None:
        async for chunk in body:
            if self._answered or transport.is_closing():
                return
            if chunk:
                self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                await self._drain()

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
        self._informational_seen = 0
        self._unparsed = 0
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

    def _refuse(self, error: BaseException) -> None:
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
        self._progress = False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            stop: BaseException | None = self._stop_reason(error)
        else:
            stop = None
        start = 0  # where the message being parsed began in ``data`` (past 1xx answers)
        while stop is not None:  # outside the except clause: no exception chains from one stop to the next
            if isinstance(stop, _InformationalEnd):
                self._unparsed = 0
                start = self._after_informational(data, start)
                if 0 <= start < len(data):
                    stop = self._feed_rest(memoryview(data)[start:])
                    continue
            elif isinstance(stop, _BytesAfterAnswer):
                self._keep_alive = False
                self.close()
            else:
                self._refuse(stop)
            return
        if self._progress:
            self._unparsed = 0
        else:
            # llhttp holds these bytes in a line not ended yet (no callback ran): bound it.
            self._unparsed += len(data) - start
            if self._unparsed > _MAX_OPEN_LINE:
                self._refuse(_malformed(f"a line is longer than {_MAX_OPEN_LINE} bytes"))
                return
        if self._in_head:
            # A 1xx head's blank line may straddle reads: keep the last bytes of this message.
            self._head_tail = (self._head_tail + data[max(start, len(data) - 3) :])[-3:]

    def _feed_rest(self, data: memoryview) -> BaseException | None:
        """Parse what follows a 1xx answer in a read; None, or why parsing stopped."""
        if not data[:1] == b"H":
            return _malformed(f"{_shown(bytes(data[:16]))} where an answer should begin")
        self._message_due = False
        self._progress = False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            return self._stop_reason(error)
        return None

    def _stop_reason(self, error: Exception) -> BaseException:
        """Why the parser stopped with ``error``: kept on self by the callback that stopped it, as
        httptools hands it on only as the error's __context__, which nested parsing would spoil."""
        stop, self._stop = self._stop, None
        if stop is not None:
            return stop
        if isinstance(error, httptools.HttpParserUpgrade):
            # on_headers_complete refuses 101 first; this is for any other way llhttp upgrades.
            return _malformed("it switched protocols, which was not asked for")
        if isinstance(error, httptools.HttpParserCallbackError):
            return _malformed(f"{error}: {error.__context__!r}")
        return _malformed(str(error))

    def _after_informational(self, data: bytes, start: int) -> int:
        """Parsing stopped at the end of a 1xx head in ``data`` (that began at ``start``, or in an
        earlier read): where the next answer begins, or -1 when the exchange was refused."""
        self._informational_seen += 1
        if self._informational_seen > MAX_INFORMATIONAL:
            self._refuse(_malformed(f"more than {MAX_INFORMATIONAL} informational (1xx) answers"))
            return -1
        tail = self._head_tail  # empty unless the 1xx head began in an earlier read (start is 0 then)
        straddling = (tail + data[:3]).find(b"\r\n\r\n") if tail else -1
        if straddling >= 0:
            end = straddling + 4 - len(tail)
        else:
            blank_line = data.find(b"\r\n\r\n", start)
            if blank_line < 0:
                self._refuse(_malformed("a 1xx head without its blank line"))  # llhttp took a bare LF
                return -1
            end = blank_line + 4
        self._parser = httptools.HttpResponseParser(self)  # stopped by the exception, it takes no more
        self._message_due = True
        return end

    def eof_received(self) -> bool:
        return False  # close our side too: HTTP/1.1 has no use for a half-closed connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake_drain()
        if exc is not None and self._active and not self._complete:
            self._read_what_is_left()
        if self._active and not self._complete:
            # Only a clean close (no error) ends a body read until close: after a reset, whatever
            # the socket gave last says nothing of where the body was meant to end.
            if exc is None and self._error is None and self._head is not None and self._head.done():
                if self._until_close():
                    self._keep_alive = False
                    self._finish()
                    return
            detail = f": {exc!r}" if exc else ""
            self._fail(ConnectionBroken(f"connection closed before the answer was whole{detail}"))
        else:
            self._fail(ConnectionBroken("connection closed"))

    def _read_what_is_left(self) -> None:
        """Parse what the socket still holds: an answer framed by length or chunks may end there.

        A failed write (the upstream closed: it answered early, refusing a body it did not want,
        and the kernel turned our next write into a reset) makes the transport stop reading at
        once, though its answer may be waiting in the socket. The socket is still open here. What
        this reads never ends an answer read until close: the end of data after a reset is no
        clean end (the reset consumed, recv gives b"" as for a FIN).
        """
        transport = self._transport
        if transport is None or transport.get_extra_info("ssl_object") is not None:
            return  # the socket holds TLS records, which only the transport could decrypt
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            with sock.dup() as copy:  # a plain non-blocking socket on the same connection
                copy.setblocking(False)
                left = _MAX_LEFT_TO_READ  # what nobody will read anyway is not taken into memory
                while left > 0 and not self._complete and self._error is None:
                    data = copy.recv(min(left, 256 * 1024))
                    if not data:
                        return
                    left -= len(data)
                    self.data_received(data)
        except OSError:
            pass  # nothing more to read (EAGAIN), or the reset itself
        except Exception as error:  # nothing may escape connection_lost
            self._fail(ConnectionBroken(f"reading what the upstream sent before closing failed: {error!r}"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    def _until_close(self) -> bool:
        names = {name.lower() for name, _ in self._headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # ------------------------------------------------------------------ httptools callbacks
    # Each notes that the parser moved on (``_progress``: see data_received). One that must stop
    # the parser raises ``_halt(reason)``.

    def _halt(self, reason: BaseException) -> BaseException:
        self._stop = reason
        return reason

    def on_message_begin(self) -> None:
        self._progress = True
        if self._complete:
            raise self._halt(_BytesAfterAnswer())  # a second answer (or garbage) in the same read as the first
        self._fields = []
        self._head_tail = b""
        self._in_head = True
        self._head_size = 0
        self._transfer_encoding_seen = False

    def on_status(self, reason: bytes) -> None:
        self._progress = True
        self._head_size += len(reason)  # llhttp may hand it over in pieces, one per read
        if self._head_size > MAX_FIELD_SIZE:
            raise self._halt(_malformed(f"the status line's reason is longer than {MAX_FIELD_SIZE} bytes"))
        if not _REASON.fullmatch(reason):
            raise self._halt(_malformed(f"the status line's reason {_shown(reason)} holds control characters"))

    def on_header(self, name: bytes, value: bytes) -> None:
        # On the path of every answer: one test for all that is unusual.
        self._progress = True
        fields = self._fields
        name_size = len(name)
        value_size = len(value)
        self._head_size = head_size = self._head_size + name_size + value_size + 4
        # (Sizes summed: a field near both limits is looked at closer, and taken, by _check_field.)
        if (
            len(fields) >= MAX_FIELDS
            or name_size + value_size > MAX_FIELD_SIZE
            or head_size > MAX_HEAD_SIZE
            or name_size == 17
        ):
            refusal = self._check_field(name, value)
            if refusal is not None:
                raise self._halt(refusal)
        if value_size and value[-1] in b" \t":
            value = value.rstrip(b" \t")  # RFC 9110's field-value ends with no whitespace; llhttp keeps it
        fields.append((name, value))

    def _check_field(self, name: bytes, value: bytes) -> MalformedAnswer | None:
        """Why a field is refused (over the limits, a transfer-encoding not ours), or None."""
        if len(self._fields) >= MAX_FIELDS:
            return _malformed(f"more than {MAX_FIELDS} header fields")
        if len(name) > MAX_FIELD_SIZE:
            return _malformed(f"a header name is longer than {MAX_FIELD_SIZE} bytes")
        if len(value) > MAX_FIELD_SIZE:
            return _malformed(f"header {_shown(name)} is longer than {MAX_FIELD_SIZE} bytes")
        if self._head_size > MAX_HEAD_SIZE:
            return _malformed(f"the head (or its trailers) is longer than {MAX_HEAD_SIZE} bytes")
        if name.lower() == b"transfer-encoding":
            # llhttp also takes codings it cannot undo ("gzip, chunked") and reads until close
            # when chunked is not last; the only coding a caller of ours can be given is chunked.
            if value.strip(b" \t").lower() != b"chunked" or self._transfer_encoding_seen:
                return _malformed(f"transfer-encoding {_shown(value)} is not supported, only one chunked is")
            self._transfer_encoding_seen = True
        return None

    def on_headers_complete(self) -> None:
        self._progress = True
        self._in_head = False
        # Trailers, if any, go to a list of their own (limited alike), never handed out.
        self._headers, self._fields = self._fields, []
        self._head_size = 0
        status = self._parser.get_status_code()
        if status == 101:
            raise self._halt(_malformed("the upstream switched protocols (101), which was not asked for"))
        if not 100 <= status <= 599:
            raise self._halt(_malformed(f"status {status:03d} is outside 100-599 (RFC 9110)"))
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
        self._progress = True
        if self._head_only:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _MAX_BUFFERED and not self._reading_paused and not self._closed:
            assert self._transport is not None
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake_body()

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_chunk_complete(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._progress = True
        if self._informational:
            self._informational = False
            raise self._halt(_InformationalEnd())
        if not self._head_only:
            self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
            self._finish()


def _malformed(reason: str) -> MalformedAnswer:
    return MalformedAnswer(f"malformed HTTP answer: {reason}")


def _retrieved(task: asyncio.Task[None]) -> None:
    """Take what a task we cancelled raised: it is of no use, and must not be logged as lost."""
    if not task.cancelled():
        task.exception()


def _shown(text: bytes) -> str:
    """``text`` for a message: decoded, and cut short when long."""
    shown = text[:64].decode("latin-1")
    return repr(shown + "..." if len(text) > 64 else shown)
