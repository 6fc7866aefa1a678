"""Discovery wiring from settings: register this instance, and resolve other services.

Registering and resolving are independent. Every instance with a REDIS_URL registers itself in the
Redis registry (the app factory adds the registration component), whatever ``DISCOVERY`` says, so
operators and the console see every instance, in Kubernetes too; ``DISCOVERY_REGISTER=false`` turns
that off. ``DISCOVERY`` only says how this service resolves others: each mode gives the app a
resolver (``app.state.resolver``). Both use the process's one Redis client (``app.state.redis``,
see shared_redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from litestar import Litestar

from flotilla_discovery.static_resolver import StaticResolver
from flotilla_kit.health import ReadinessCheck
from flotilla_kit.settings import ServiceSettings, SettingsError
from prometheus_client import Counter

if TYPE_CHECKING:  # imported at run time only with Redis, as below
    from flotilla_discovery.registry import Heartbeat

log = logging.getLogger(__name__)

# How long shutdown waits for the heartbeat to stop and deregister.
DEREGISTER_SECONDS = 2.0


def check_discovery_settings(settings: ServiceSettings) -> None:
    """Raise SettingsError when the discovery mode lacks what it needs."""
    if settings.discovery == "redis" and not settings.redis_url:
        raise SettingsError(["DISCOVERY=redis needs REDIS_URL"])
    if settings.advertise_host and not _is_host(settings.advertise_host):
        raise SettingsError(
            [
                f"ADVERTISE_HOST={settings.advertise_host!r}: a host name or an IP address (no port, no"
                " brackets, no IPv6 zone: other hosts must reach it by this name)"
            ]
        )
    if settings.discovery == "static":
        try:
            StaticResolver.from_env_string(settings.service_urls)
        except ValueError as exc:
            raise SettingsError([f"SERVICE_URLS={settings.service_urls!r}: {exc}"]) from None


@contextlib.asynccontextmanager
async def resolver_component(app: Litestar) -> AsyncIterator[None]:
    """Sets ``app.state.resolver``; in redis mode it reads the registry through ``app.state.redis``."""
    settings: ServiceSettings = app.state.settings  # checked by create_service_app
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
    """With a REDIS_URL (and DISCOVERY_REGISTER on), registers this instance (with heartbeats) until shutdown.

    In redis mode callers find the instance through the registry, so it adds the readiness check
    ``discovery registration``: it fails while callers cannot find this instance (not registered
    yet, or the registration expired because heartbeats keep failing) and while the heartbeat
    restarts after an unexpected error; it recovers once a heartbeat registers again. In the other
    modes callers find it by other means (DNS, a static list) and the registration is for operators
    only: a registry out of reach does not make the instance unready. Restarts are counted in
    ``flotilla_discovery_heartbeat_restarts_total``.
    """
    settings: ServiceSettings = app.state.settings
    if not settings.redis_url or not settings.discovery_register:
        if settings.discovery == "redis" and not settings.discovery_register:
            log.warning("DISCOVERY_REGISTER=false: this instance is not registered, so no service can call it")
        yield
        return
    from flotilla_discovery.instance import Instance
    from flotilla_discovery.registry import Heartbeat, RedisRegistry

    registry = RedisRegistry(app.state.redis, ttl_seconds=settings.discovery_ttl_seconds)
    me = Instance(
        service=settings.service_name,
        instance_id=settings.resolved_instance_id(),
        url=settings.resolved_public_url(),
        version=app.state.service_version,
        started_at=time.time(),
        internal_url=settings.resolved_internal_url(),
        routable=settings.discovery == "redis",
    )
    restarts = Counter(
        "flotilla_discovery_heartbeat_restarts_total",
        "Discovery heartbeat loops restarted after an unexpected error stopped them.",
        registry=app.state.metrics.registry,
    )
    heartbeat = Heartbeat(registry, me, on_restart=restarts.inc)
    stop = asyncio.Event()
    task = asyncio.create_task(heartbeat.run(stop), name="discovery heartbeat")
    if settings.discovery == "redis":
        app.state.readiness_checks["discovery registration"] = _registration_check(heartbeat, task)
    try:
        yield
    finally:
        stop.set()  # deregisters, so callers stop choosing this instance while the rest stops
        await _stopped(task)


async def _stopped(task: asyncio.Task[None]) -> None:
    # Deregistering is a courtesy (the entry expires with its TTL anyway): a Redis that stalls must
    # not hold the rest of the shutdown (consumers, the outbox, the database, the last traces).
    try:
        async with asyncio.timeout(DEREGISTER_SECONDS):
            await asyncio.shield(task)
    except TimeoutError:
        log.warning("deregistering took over %.0f s (Redis stalled?): left to expire with its TTL", DEREGISTER_SECONDS)
        task.cancel()
        await asyncio.wait((task,))


def _registration_check(heartbeat: Heartbeat, task: asyncio.Task[None]) -> ReadinessCheck:
    async def check() -> None:
        if task.done():  # ``run`` ends only when stopped or cancelled: either way it heartbeats no more
            raise RuntimeError("the heartbeat task has ended")
        problem = heartbeat.problem()
        if problem:
            raise RuntimeError(problem)

    return check


def _resolver(settings: ServiceSettings) -> Any:
    if settings.discovery == "static":
        return StaticResolver.from_env_string(settings.service_urls)
    if settings.discovery == "dns":
        from flotilla_discovery.dns_resolver import DnsResolver

        return DnsResolver(settings.dns_template)
    return StaticResolver({})


# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


def _is_host(host: str) -> bool:
    # An IP address without a zone ("fe80::1%eth0" names an interface of this host, meaningless
    # elsewhere), or a host name; "$(POD_IP)", an unexpanded manifest reference, is neither.
    try:
        return "%" not in host and bool(ipaddress.ip_address(host))
    except ValueError:
        return _HOST_NAME.fullmatch(host) is not None
