"""Keep-alive HTTP/1.1 connections per origin, with a cap on how many are open in all."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flotilla_http.h1 import Body, ConnectionBroken, H1Connection, RawHeaders

_VISIBLE_ASCII = re.compile("[!-~]*")


class ConnectFailed(Exception):
    """No connection could be made (refused, unreachable, timed out): nothing was sent."""


@dataclass(frozen=True)
class Origin:
    """Where an instance listens, and the path its URL puts before every request's."""

    scheme: str
    host: str
    port: int
    base_path: bytes

    @classmethod
    def parse(cls, url: str) -> Origin:
        """Raises ValueError for a URL that is not http(s)://host[:port][/base]."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not _VISIBLE_ASCII.fullmatch(parts.path):
            # It goes before every request's target: a space or control would split the request line.
            raise ValueError(f"the base path must be percent-encoded, without spaces or controls: {url!r}")
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/").encode("latin-1"))

    @property
    def host_header(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return (host if self.port == default else f"{host}:{self.port}").encode("latin-1")


class Answer:
    """An answer whose body is still to read; ``release`` hands the connection back (or drops it)."""

    __slots__ = ("_connection", "_release", "headers", "status")

    def __init__(
        self, connection: H1Connection, status: int, headers: RawHeaders, release: Callable[[H1Connection], None]
    ) -> None:
        self.status = status
        self.headers = headers  # raw (name, value) pairs in the order received, repeats kept
        self._connection = connection
        self._release = release

    async def read_chunk(self, limit: int = 64 * 1024) -> bytes:
        """The next piece of the body (at most ``limit`` bytes); b"" at its end. Raises ConnectionBroken."""
        return await self._connection.read_chunk(limit)

    def read_arrived(self) -> bytes | None:
        """The rest of the body when all of it has arrived already, else None (and nothing is taken)."""
        return self._connection.take_whole_body()

    async def read(self) -> bytes:
        """The rest of the body in one piece. Raises ConnectionBroken."""
        chunks = []
        while chunk := await self._connection.read_chunk(1 << 30):
            chunks.append(chunk)
        return b"".join(chunks)

    def release(self) -> None:
        """Give the connection back when the body was read whole, else close it. Idempotent."""
        self._release(self._connection)


class ConnectionPool:
    """Connections to any number of origins, reused LIFO (the warmest first).

    At most ``limit`` connections are open at once; a request beyond that waits for one to be
    released. Idle connections older than ``idle_timeout`` seconds are closed instead of reused:
    servers close idle connections too (hyper, under granian, after 30 s), and a request sent on a
    connection the server is closing at that moment fails. ``clock`` (seconds, monotonic) measures
    idleness and is injectable for tests. Meant for one event loop.
    """

    def __init__(
        self,
        *,
        limit: int = 512,
        connect_timeout: float = 1.0,
        idle_timeout: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._ssl_context = ssl_context
        self._clock = clock
        self._idle: dict[Origin, list[H1Connection]] = {}
        self._owner: dict[H1Connection, Origin] = {}  # every open connection, busy or idle
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def request(self, origin: Origin, method: bytes, target: bytes, headers: RawHeaders, body: Body) -> Answer:
        """Send one request and wait for the answer's head.

        ``target`` is the path and query, already percent-encoded; the origin's base path is put
        before it. Raises ConnectFailed (nothing sent) or ConnectionBroken (sent, at least in part,
        with no whole answer head). Cancelling closes the connection.
        """
        connection = await self._acquire(origin)
        try:
            await connection.send(method, origin.base_path + target, headers, body)
            status, answer_headers = await connection.read_head()
        except BaseException:
            self._drop(connection)
            raise
        return Answer(connection, status, answer_headers, self._give_back)

    async def close(self) -> None:
        """Close every connection; requests afterwards raise ConnectFailed."""
        self._closed = True
        for connection in list(self._owner):
            self._drop(connection)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def open_connections(self) -> int:
        return len(self._owner) + self._connecting

    async def _acquire(self, origin: Origin) -> H1Connection:
        idle = self._idle.get(origin)
        now = self._clock()
        while idle:
            connection = idle.pop()
            if connection.reusable and now - connection.idle_since < self.idle_timeout:
                return connection
            self._drop(connection)
        while self.open_connections >= self.limit and not self._closed:
            if self._drop_oldest_idle():
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if self._closed:
            raise ConnectFailed("the connection pool is closed")
        return await self._connect(origin)

    async def _connect(self, origin: Origin) -> H1Connection:
        loop = asyncio.get_running_loop()
        tls = (self._ssl_context or True) if origin.scheme == "https" else None
        self._connecting += 1  # holds a slot while connecting
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: H1Connection(origin.host_header), origin.host, origin.port, ssl=tls
                )
        except TimeoutError:
            raise ConnectFailed(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as error:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {error}") from error
        finally:
            self._connecting -= 1
            self._wake_one()  # the slot is free again, or about to be counted as the connection's
        self._owner[connection] = origin
        return connection

    def _give_back(self, connection: H1Connection) -> None:
        origin = self._owner.get(connection)
        if origin is None:
            return  # released already
        if self._closed or not connection.reusable:
            self._drop(connection)
            return
        idle = self._idle.setdefault(origin, [])
        if connection not in idle:
            connection.idle_since = self._clock()
            idle.append(connection)
            self._wake_one()

    def _drop(self, connection: H1Connection) -> None:
        connection.close()
        origin = self._owner.get(connection)
        if origin is not None:
            idle = self._idle.get(origin)
            if idle and connection in idle:
                idle.remove(connection)
        self._forget(connection)

    def _forget(self, connection: H1Connection) -> None:
        if self._owner.pop(connection, None) is not None:
            self._wake_one()

    def _drop_oldest_idle(self) -> bool:
        """Close the idle connection (of any origin) that waited longest; False when none is idle."""
        oldest = min((idle[0] for idle in self._idle.values() if idle), key=lambda c: c.idle_since, default=None)
        if oldest is None:
            return False
        self._drop(oldest)
        return True

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


__all__ = ["Answer", "ConnectFailed", "ConnectionBroken", "ConnectionPool", "Origin"]
