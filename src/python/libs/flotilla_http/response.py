"""What a call returns: a whole ``Response``, or a ``StreamingResponse`` read chunk by chunk."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar, overload

import msgspec
from multidict import CIMultiDictProxy

from flotilla_discovery.instance import Instance
from flotilla_http.errors import UpstreamConnectError, UpstreamTimeout
from flotilla_http.h1 import ConnectionBroken
from flotilla_http.pool import Answer

T = TypeVar("T")


class Response:
    """A whole answer: ``status``, ``headers`` (case-insensitive, repeats kept), ``content`` bytes,
    and the ``instance`` that answered."""

    __slots__ = ("content", "headers", "instance", "status")

    def __init__(self, status: int, headers: CIMultiDictProxy[str], content: bytes, instance: Instance) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.instance = instance

    @overload
    def json(self) -> Any:
        ...

    @overload
    def json(self, type: type[T]) -> T:
        ...

    def json(self, type: Any = Any) -> Any:
        """The body decoded as JSON, into ``type`` when given (e.g. a msgspec Struct).

        Raises msgspec.DecodeError (a ValueError) when the body is not JSON, or not of ``type``.
        """
        return msgspec.json.decode(self.content, type=type)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def __repr__(self) -> str:
        return f"<Response {self.status} from {self.instance.instance_id}, {len(self.content)} bytes>"


class StreamingResponse:
    """An answer whose body is read as it arrives, to relay it without holding it whole.

    ``headers`` are the raw (name, value) pairs in order, repeats kept (``raw_headers`` the same as
    bytes, ready for ASGI). The body is not decompressed: relay ``content-encoding`` with it.
    """

    def __init__(self, service: str, answer: Answer, instance: Instance, deadline: float) -> None:
        self.service = service
        self.status = answer.status
        self.raw_headers: list[tuple[bytes, bytes]] = answer.headers
        self.instance = instance
        self._answer = answer
        self._deadline = deadline

    @functools.cached_property
    def headers(self) -> list[tuple[str, str]]:
        # Decoded only when asked for: a relay passes raw_headers on as they are.
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw_headers]

    async def iter_chunks(self, chunk_size: int = 64 * 1024) -> AsyncIterator[bytes]:
        """The body in chunks of at most ``chunk_size`` bytes, as they arrive.

        Raises UpstreamTimeout when the body does not end before the call's deadline, and
        UpstreamConnectError when the connection breaks before it ends.
        """
        while True:
            try:
                async with asyncio.timeout(max(0.0, self._deadline - time.monotonic())):
                    chunk = await self._answer.read_chunk(chunk_size)
            except TimeoutError:
                message = "body not received before the deadline"
                raise UpstreamTimeout(self.service, message, instance=self.instance) from None
            except ConnectionBroken as error:
                message = f"body broken off: {error}"
                raise UpstreamConnectError(self.service, message, instance=self.instance) from error
            if not chunk:
                return
            yield chunk

    async def read(self) -> bytes:
        """The rest of the body in one piece (for small answers, such as an error's). Raises as iter_chunks."""
        arrived = self._answer.read_arrived()
        if arrived is not None:
            return arrived  # a small answer usually arrives with its head: nothing to wait for
        return b"".join([chunk async for chunk in self.iter_chunks()])
