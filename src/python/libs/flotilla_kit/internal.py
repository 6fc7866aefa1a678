"""Operators' endpoints on a port of their own: ``/metrics`` and ``/info`` when INTERNAL_PORT is set.

A service's public port may face the internet (the gateway's does): its metrics and the versions
in /info are for scrapers and operators, who reach the internal port instead. This is a minimal
HTTP/1.1 server on asyncio (GET only, one request per connection, headers bounded in size and
time), not a second app: it only reads what the kit already keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

_READ_TIMEOUT_SECONDS = 5.0
_MAX_HEAD_BYTES = 8192

Endpoint = Callable[[], tuple[bytes, bytes]]  # () -> (content type, body)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoints: dict[str, Endpoint]) -> None:
    try:
        async with asyncio.timeout(_READ_TIMEOUT_SECONDS):
            head = await reader.readuntil(b"\r\n\r\n")
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0].decode("latin-1")
        endpoint = endpoints.get(path)
        if method != b"GET":
            status, content_type, body = b"405 Method Not Allowed", b"text/plain", b"GET only\n"
        elif endpoint is None:
            status, content_type, body = b"404 Not Found", b"text/plain", b"not found\n"
        else:
            status, (content_type, body) = b"200 OK", endpoint()
        writer.write(
            b"HTTP/1.1 %b\r\ncontent-type: %b\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
            % (status, content_type, len(body), body)
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # a slow, cut or oversized request gets no answer
    except Exception:
        log.exception("internal endpoint failed")
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def internal_endpoints(host: str, port: int, endpoints: dict[str, Endpoint]) -> AsyncIterator[None]:
    """Serve ``endpoints`` (path -> callable) on ``host:port`` while the context is open."""
    server = await asyncio.start_server(
        lambda reader, writer: _answer(reader, writer, endpoints), host, port, limit=_MAX_HEAD_BYTES
    )
    log.info("internal endpoints listening", extra={"port": port, "paths": sorted(endpoints)})
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
