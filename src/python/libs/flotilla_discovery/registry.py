"""The Redis service registry: instances register with a TTL, heartbeat, and deregister."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import redis.asyncio as redis
from redis.exceptions import RedisError

from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_store import RedisStore, service_keys

log = logging.getLogger(__name__)


class RedisRegistry:
    """Registers instances in Redis, each live until ``ttl_seconds`` after its last heartbeat.

    The layout (one sorted set of expiries and one hash of instance data per service, pruned on
    read) is described in ``flotilla_discovery.redis_store``. The client is the caller's to close.
    """

    def __init__(self, client: redis.Redis, *, ttl_seconds: float = 10.0, namespace: str = "flotilla") -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds}")
        self.ttl_seconds = ttl_seconds
        self.namespace = namespace
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._store = RedisStore(client, namespace)

    async def register(self, instance: Instance) -> None:
        """Make ``instance`` live for one TTL and announce it on its service's channel.

        Idempotent: registering again refreshes the entry (and announces again). Raises RedisError.
        """
        await self._store.write(instance, ttl_ms=self._ttl_ms, announce="always")

    async def heartbeat(self, instance: Instance) -> None:
        """Keep ``instance`` live for another TTL.

        Re-creates (and announces) the entry if it expired or Redis lost it, so a heartbeat after an
        outage is a re-registration. Raises RedisError.
        """
        if await self._store.write(instance, ttl_ms=self._ttl_ms, announce="if_new"):
            log.info("re-registered %s/%s (its entry had expired or was lost)", instance.service, instance.instance_id)

    async def deregister(self, instance: Instance) -> None:
        """Remove ``instance`` and announce it; idempotent. Raises RedisError."""
        await self._store.remove(instance)

    async def instances(self, service: str) -> list[Instance]:
        """Live (unexpired) instances of ``service``, sorted by instance id. Raises RedisError.

        Reads straight from Redis on every call; callers on a request path want a ``RedisResolver``.
        """
        return await self._store.live(service)

    async def run_heartbeat(self, instance: Instance, stop: asyncio.Event) -> None:
        """Register ``instance``, heartbeat every ttl/3 until ``stop`` is set, then deregister.

        ``Heartbeat(registry, instance).run(stop)``, for a caller that does not watch it.
        """
        await Heartbeat(self, instance).run(stop)

    async def _deregister_quietly(self, instance: Instance) -> None:
        try:
            # Bounded: shutdown must not hang on an unreachable Redis; the TTL cleans up instead.
            async with asyncio.timeout(self.ttl_seconds):
                await self.deregister(instance)
        except (RedisError, OSError) as error:
            log.warning(
                "could not deregister %s/%s, it expires with its TTL: %r", instance.service, instance.instance_id, error
            )


class Heartbeat:
    """Keeps one instance registered for the life of a task, and says whether it is.

    ``run`` registers the instance, heartbeats every ttl/3 until ``stop`` is set, then deregisters
    (also when the task is cancelled, before the cancellation propagates). It never ends on an
    error: while Redis is unreachable it logs once, keeps trying at the same pace, and registers
    again as soon as Redis answers (even if Redis lost its data); any other error (a bug) ends the
    loop at hand only: it is logged with its traceback, counted (``restarts``, ``on_restart``) and
    the loop starts again after a backoff. ``problem`` tells a readiness check why callers cannot
    find the instance.
    """

    def __init__(
        self,
        registry: RedisRegistry,
        instance: Instance,
        *,
        restart_backoff: float = 0.1,  # doubles per failed restart, up to the heartbeat interval
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        service_keys(registry.namespace, instance.service)  # a bad name fails here, not in every retry
        self.registry = registry
        self.instance = instance
        self.interval = registry.ttl_seconds / 3
        self.restart_backoff = restart_backoff
        self.on_restart = on_restart
        self.restarts = 0
        self._restarts_in_a_row = 0
        self._live_until: float | None = None  # monotonic time the last written entry expires at
        self._failure: str | None = None  # the last registry error, while writes fail
        self._crash: str | None = None  # the unexpected error, until a restarted loop has written

    def problem(self) -> str | None:
        """Why the instance is not registered now, or None while it is.

        A failed heartbeat is no problem while the last registration is live (callers still find
        the instance); past its TTL it is. A loop stopped by an unexpected error is one at once.
        """
        if self._crash:
            return self._crash
        failing = f": {self._failure}" if self._failure else ""
        if self._live_until is None:
            return f"not registered yet{failing}"
        expired_for = time.monotonic() - self._live_until
        if expired_for >= 0:
            return f"registration expired {expired_for:.1f}s ago, no heartbeat since{failing}"
        return None

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the instance registered until ``stop`` is set, then deregister it; never raises for errors."""
        try:
            while not stop.is_set():
                try:
                    await self._beat(stop)
                except Exception as exc:  # anything: an instance silently dropping out of discovery must not
                    self._restart_after(exc)
                    await _wait_for(stop, self._restart_delay())
        finally:
            await self.registry._deregister_quietly(self.instance)

    def _restart_after(self, exc: Exception) -> None:
        self.restarts += 1
        self._restarts_in_a_row += 1
        self._crash = f"heartbeat stopped by {type(exc).__name__}: {exc}; restarting"
        log.error(
            "discovery heartbeat of %s/%s stopped by an unexpected error, restarting",
            self.instance.service,
            self.instance.instance_id,
            exc_info=exc,
        )
        if self.on_restart:
            self.on_restart()

    def _restart_delay(self) -> float:
        # Never longer than a heartbeat interval: a bug that went away costs the registration no more.
        base = self.restart_backoff * 2 ** (self._restarts_in_a_row - 1)
        return min(base, self.interval) * random.uniform(0.5, 1.0)

    async def _beat(self, stop: asyncio.Event) -> None:
        registered = False
        while not stop.is_set():
            # Measured before the write: the entry lives a TTL from when Redis ran it, not earlier.
            written_at = time.monotonic()
            try:
                if registered:
                    await self.registry.heartbeat(self.instance)
                else:
                    await self.registry.register(self.instance)
                    registered = True
            except (RedisError, OSError) as error:
                if self._failure is None:
                    log.warning(
                        "registry unreachable, %s/%s keeps retrying: %r",
                        self.instance.service,
                        self.instance.instance_id,
                        error,
                    )
                self._failure = repr(error)
            else:
                self._live_until = written_at + self.registry.ttl_seconds
                if self._failure is not None:
                    log.info(
                        "registry reachable again; %s/%s is live", self.instance.service, self.instance.instance_id
                    )
                self._failure = None
                self._crash = None
                self._restarts_in_a_row = 0
            await _wait_for(stop, self.interval)


async def _wait_for(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever comes first."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
