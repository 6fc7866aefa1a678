"""One Redis connection shared by every request in flight, for the rate limiter's one script call.

Leased permits keep a busy caller's requests off Redis, but a request of a caller with no permits
left (most callers: an anonymous address, a user making a request now and then) runs the limiter's
script, so its cost per call is the gateway's. redis-py spends ~125 µs of CPU per call on its
pool, retry wrapper and command machinery, this client ~40 µs (src/python/tools/bench/
ratelimit_bench.py). Here concurrent calls share one connection: the commands of one event-loop
turn go out in one write, Redis answers in order, and hiredis parses the answers (auto-pipelining,
as ioredis and Lettuce do it). Nor does a crowd of requests need a connection each, as in a pool.

Errors: ``RedisUnavailable`` (an OSError) when Redis cannot be reached or does not answer in time;
after a failed connect or an unanswered call, calls fail at once for ``retry_interval`` seconds
(by ``clock``, monotonic time by default) instead of each waiting for its own timeout. Error
replies raise ``redis.exceptions.ResponseError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import ResponseError


class RedisUnavailable(OSError):
    """Redis could not be reached, the connection broke, or no answer came in time."""


def _pack(*parts: bytes | str | int) -> bytes:
    encoded = [part if isinstance(part, bytes) else str(part).encode() for part in parts]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%b\r\n" % (len(part), part) for part in encoded)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.outgoing: list[bytes] = []  # commands of this loop turn, written together
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def send(self, command: bytes, future: asyncio.Future[Any]) -> None:
        # The answer matching this command is the next one after those already pending.
        self.pending.append(future)
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outgoing.append(command)

    def _flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(outgoing))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            future = self.pending.popleft()
            if future.done():
                continue  # its caller gave up waiting; the answer still had to be consumed in order
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(ResponseError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(RedisUnavailable(f"connection to Redis lost: {exc or 'closed'}"))


class PipelinedRedis:
    """See the module docstring. Meant for one event loop; ``url`` is a redis:// or rediss:// URL."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 1.0,
        reply_timeout: float = 2.0,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis:// or rediss:// URL: {url!r}")
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._tls = parts.scheme == "rediss"
        # AUTH and SELECT, sent ahead of anything else on each new connection.
        self._setup: list[bytes] = []
        if parts.password:
            user = unquote(parts.username) if parts.username else None
            self._setup.append(_pack("AUTH", *([user] if user else []), unquote(parts.password)))
        database = parts.path.strip("/")
        if database and database != "0":
            if not database.isdigit():
                raise ValueError(f"bad database number {database!r} in the Redis URL")
            self._setup.append(_pack("SELECT", database))
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self.retry_interval = retry_interval
        self._clock = clock
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._down_until = 0.0
        self._scripts: dict[str, bytes] = {}  # sha1 -> source, for the NOSCRIPT fallback

    async def eval_script(self, script: str, keys: list[str], args: list[int | str]) -> Any:
        """Run ``script`` by its SHA1 (loading it with EVAL when Redis does not know it yet)."""
        sha = hashlib.sha1(script.encode()).hexdigest()
        self._scripts.setdefault(sha, script.encode())
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except ResponseError as error:
            if not str(error).startswith("NOSCRIPT"):
                raise
            return await self.execute("EVAL", self._scripts[sha], len(keys), *keys, *args)

    async def ping(self) -> None:
        """A readiness check: returns when Redis answers PING, raises otherwise."""
        answer = await self.execute("PING")
        if answer != b"PONG":
            raise ResponseError(f"unexpected answer to PING: {answer!r}")

    async def execute(self, *command: bytes | str | int) -> Any:
        """Send one command with whatever else this loop turn sends, and wait for its answer."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.send(_pack(*command), future)
        try:
            async with asyncio.timeout(self.reply_timeout):
                return await future
        except TimeoutError:
            # A Redis that does not answer is treated as down: the connection is dropped (failing
            # the calls waiting on it at once) and calls fail fast until the retry interval passes.
            self._down_until = self._clock() + self.retry_interval
            if self._protocol is protocol:
                self._protocol = None  # the next call must not find it before it is known lost
            if protocol.transport is not None:
                protocol.transport.abort()
            raise RedisUnavailable(f"no answer from Redis within {self.reply_timeout}s") from None

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def _connect(self) -> _Protocol:
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        if self._clock() < self._down_until:
            raise RedisUnavailable(f"Redis at {self._host}:{self._port} was unreachable moments ago")
        self._connecting = asyncio.get_running_loop().create_future()
        try:
            protocol = await self._open()
        except asyncio.CancelledError:
            # Our own caller went away; the others waiting on this connect fail open, once.
            self._connecting.set_exception(RedisUnavailable("connecting to Redis was abandoned"))
            self._connecting.exception()
            raise
        except BaseException as error:
            self._down_until = self._clock() + self.retry_interval
            failure = error if isinstance(error, RedisUnavailable) else RedisUnavailable(str(error))
            self._connecting.set_exception(failure)
            self._connecting.exception()  # retrieved, even when nobody else was waiting
            raise failure from None
        else:
            self._connecting.set_result(protocol)
            self._protocol = protocol
            return protocol
        finally:
            self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, self._host, self._port, ssl=ssl.create_default_context() if self._tls else None
                )
                protocol.transport = transport
                if self._setup:
                    replies = [loop.create_future() for _ in self._setup]
                    protocol.pending.extend(replies)
                    transport.write(b"".join(self._setup))
                    try:
                        await asyncio.gather(*replies)
                    except ResponseError as error:
                        transport.close()
                        raise RedisUnavailable(f"Redis refused the connection's set-up: {error}") from None
        except TimeoutError:
            raise RedisUnavailable(f"connecting to Redis at {self._host}:{self._port} timed out") from None
        except OSError as error:
            if isinstance(error, RedisUnavailable):
                raise
            raise RedisUnavailable(f"cannot connect to Redis at {self._host}:{self._port}: {error}") from None
        return protocol
