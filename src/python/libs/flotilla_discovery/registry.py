"""The Redis service registry: instances register with a TTL, heartbeat, and deregister."""

from __future__ import annotations

import asyncio
import logging

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

        Never raises for Redis trouble: while Redis is unreachable it logs once, keeps trying at the
        same pace, and re-registers as soon as Redis answers again (even if Redis lost its data).
        Run it as a task for the life of the instance. If the task is cancelled instead of stopped,
        it still tries to deregister before the cancellation propagates.
        """
        service_keys(self.namespace, instance.service)  # a bad name fails here, not in every retry
        interval = self.ttl_seconds / 3
        registered = False
        failing = False
        try:
            while not stop.is_set():
                try:
                    if registered:
                        await self.heartbeat(instance)
                    else:
                        await self.register(instance)
                        registered = True
                    if failing:
                        log.info("registry reachable again; %s/%s is live", instance.service, instance.instance_id)
                        failing = False
                except (RedisError, OSError) as error:
                    if not failing:
                        log.warning(
                            "registry unreachable, %s/%s keeps retrying: %r",
                            instance.service,
                            instance.instance_id,
                            error,
                        )
                        failing = True
                await _wait_for(stop, interval)
        finally:
            await self._deregister_quietly(instance)

    async def _deregister_quietly(self, instance: Instance) -> None:
        try:
            # Bounded: shutdown must not hang on an unreachable Redis; the TTL cleans up instead.
            async with asyncio.timeout(self.ttl_seconds):
                await self.deregister(instance)
        except (RedisError, OSError) as error:
            log.warning(
                "could not deregister %s/%s, it expires with its TTL: %r", instance.service, instance.instance_id, error
            )


async def _wait_for(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set or ``seconds`` pass, whichever comes first."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
