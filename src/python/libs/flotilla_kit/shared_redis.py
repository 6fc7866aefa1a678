"""The process's one Redis client, shared by everything in the service that talks to Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from flotilla_kit.settings import ServiceSettings, SettingsError


@contextlib.asynccontextmanager
async def shared_redis_component(app: Litestar) -> AsyncIterator[None]:
    """Sets ``app.state.redis``: one pooled client (flotilla_redis) when REDIS_URL is set, else None.

    Discovery (registration and resolver) and messaging take this client instead of building
    their own, so the process has one connection pool. Entered before them and left after them,
    it is open for the deregistration at shutdown. Raises SettingsError for a URL Redis cannot use.
    """
    settings: ServiceSettings = app.state.settings
    if not settings.redis_url:
        app.state.redis = None
        yield
        return
    # Imported only with Redis configured: a service without it starts without loading redis-py.
    from flotilla_redis.factory import create_redis

    try:
        client = create_redis(settings.redis_url)
    except ValueError as exc:  # the message names no part of the URL, which may hold a password
        raise SettingsError([f"REDIS_URL: {exc}"]) from None
    app.state.redis = client
    try:
        yield
    finally:
        await client.aclose()
