"""A service's app started in the test's own event loop, as its tests drive it without a process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from flotilla_kit.testing.waiting import eventually


@contextlib.asynccontextmanager
async def started(app: Litestar, *, timeout: float = 20.0) -> AsyncIterator[AsyncTestClient[Any]]:
    """``app`` with its lifespan run (consumers, relays and sweepers beside the test), once ``/readyz`` is 200.

    Raises TimeoutError when it is not ready within ``timeout`` seconds; stops the app on leaving.
    """
    async with AsyncTestClient(app) as client:

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await eventually(ready, timeout=timeout, what="the app ready")
        yield client
