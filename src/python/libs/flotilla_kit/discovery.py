"""Discovery wiring from settings: register this instance, and resolve other services.

With ``DISCOVERY=redis`` every service registers itself automatically (the app factory adds the
registration component); any mode gives the app a resolver (``app.state.resolver``) for calls to
other services. Both use the process's one Redis client (``app.state.redis``, see shared_redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar

from flotilla_discovery.static_resolver import StaticResolver
from flotilla_kit.settings import ServiceSettings, SettingsError


def check_discovery_settings(settings: ServiceSettings) -> None:
    """Raise SettingsError when the discovery mode lacks what it needs."""
    if settings.discovery == "redis" and not settings.redis_url:
        raise SettingsError(["DISCOVERY=redis needs REDIS_URL"])
    if settings.discovery == "static":
        try:
            StaticResolver.from_env_string(settings.service_urls)
        except ValueError as exc:
            raise SettingsError([f"SERVICE_URLS={settings.service_urls!r}: {exc}"]) from None


@contextlib.asynccontextmanager
async def resolver_component(app: Litestar) -> AsyncIterator[None]:
    """Sets ``app.state.resolver``; in redis mode it reads the registry through ``app.state.redis``."""
    settings: ServiceSettings = app.state.settings
    check_discovery_settings(settings)
    if settings.discovery != "redis":
        app.state.resolver = _resolver(settings)
        yield
        return
    # Imported only in redis mode: a service without discovery starts without loading redis.
    from flotilla_discovery.redis_resolver import RedisResolver

    resolver = RedisResolver(app.state.redis)
    await resolver.start()
    app.state.resolver = resolver
    try:
        yield
    finally:
        await resolver.close()


@contextlib.asynccontextmanager
async def registration_component(app: Litestar) -> AsyncIterator[None]:
    """In redis mode, registers this instance (with heartbeats) until shutdown."""
    settings: ServiceSettings = app.state.settings
    if settings.discovery != "redis":
        yield
        return
    from flotilla_discovery.instance import Instance
    from flotilla_discovery.registry import RedisRegistry

    registry = RedisRegistry(app.state.redis, ttl_seconds=settings.discovery_ttl_seconds)
    me = Instance(
        service=settings.service_name,
        instance_id=settings.resolved_instance_id(),
        url=settings.resolved_public_url(),
        version=app.state.service_version,
        started_at=time.time(),
    )
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(registry.run_heartbeat(me, stop), name="discovery heartbeat")
    try:
        yield
    finally:
        stop.set()  # deregisters, so callers stop choosing this instance while the rest stops
        await heartbeat


def _resolver(settings: ServiceSettings) -> Any:
    if settings.discovery == "static":
        return StaticResolver.from_env_string(settings.service_urls)
    if settings.discovery == "dns":
        from flotilla_discovery.dns_resolver import DnsResolver

        return DnsResolver(settings.dns_template)
    return StaticResolver({})
