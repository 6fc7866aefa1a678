"""A cache of the Redis registry, kept fresh by change notifications and periodic re-reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from flotilla_discovery.errors import DiscoveryUnavailable
from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_store import RedisStore, as_text, channel_pattern, channel_prefix

log = logging.getLogger(__name__)

# Pause before re-subscribing after the notification connection failed (Redis down or restarting).
_RESUBSCRIBE_SECONDS = 1.0
# Shortest wait between periodic passes, so a clock that does not move cannot make a busy loop.
_MIN_WAKE_SECONDS = 0.05


@dataclass
class _Cached:
    instances: list[Instance]
    checked_at: float  # when Redis was last asked, successfully or not


class RedisResolver:
    """Instances from the Redis registry, cached per service.

    A service's list is read from Redis on first use and then re-read when its channel announces a
    change (a listener task started by ``start()``) and whenever it is ``refresh_seconds`` old, so
    a lost notification costs at most ``refresh_seconds`` of staleness. While Redis is unreachable
    the last known list is served, and Redis is asked again at most every ``refresh_seconds`` per
    service. Without ``start()`` it still works, by age alone. The client is the caller's to close.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "flotilla",
        refresh_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self._client = client
        self._store = RedisStore(client, namespace)
        self._prefix = channel_prefix(namespace)
        self._pattern = channel_pattern(namespace)
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to change notifications and start the listener task.

        Once it returns with Redis up, every change published afterwards reaches this cache. If
        Redis is down it does not raise: the listener keeps trying to subscribe in the background.
        """
        if self._listener is not None:
            return
        pubsub = await self._subscribe_or_none()
        self._listener = asyncio.create_task(self._listen(pubsub), name="flotilla-discovery-resolver")

    async def close(self) -> None:
        """Stop the listener task; the cache stays usable (refreshing by age only)."""
        if self._listener is None:
            return
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener
        self._listener = None

    async def instances(self, service: str) -> list[Instance]:
        """Live instances of ``service``, sorted by instance id (a new list, safe to change).

        Raises DiscoveryUnavailable if Redis cannot be reached and nothing is cached for ``service``.
        Concurrent calls for one service share one read.
        """
        cached = self._cache.get(service)
        if cached is not None and self._is_fresh(cached):
            return list(cached.instances)
        return list(await self._refresh(service, force=False))

    def _is_fresh(self, cached: _Cached) -> bool:
        return self._clock() - cached.checked_at < self.refresh_seconds

    async def _refresh(self, service: str, *, force: bool) -> list[Instance]:
        async with self._locks.setdefault(service, asyncio.Lock()):
            cached = self._cache.get(service)
            if not force and cached is not None and self._is_fresh(cached):
                return cached.instances  # another caller refreshed it while we waited
            try:
                found = await self._store.live(service)
            except (RedisError, OSError) as error:
                if cached is None:
                    raise DiscoveryUnavailable(service, f"registry unreachable: {error!r}") from error
                log.warning("registry unreachable, serving the last known instances of %s: %r", service, error)
                cached.checked_at = self._clock()  # so that callers don't each wait on a dead Redis
                return cached.instances
            self._cache[service] = _Cached(found, self._clock())
            return found

    async def _refresh_quietly(self, service: str, *, force: bool) -> None:
        # Only a first read raises, and a cached service has had one; the guard is for a race with
        # a service being read for the first time, whose caller gets the error itself.
        with contextlib.suppress(DiscoveryUnavailable):
            await self._refresh(service, force=force)

    async def _subscribe_or_none(self) -> PubSub | None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.psubscribe(self._pattern)
        except (RedisError, OSError) as error:
            log.warning("cannot subscribe to discovery changes yet, will retry: %r", error)
            await pubsub.aclose()
            return None
        return pubsub

    async def _listen(self, pubsub: PubSub | None) -> None:
        while True:
            if pubsub is None:
                await asyncio.sleep(_RESUBSCRIBE_SECONDS)
                pubsub = await self._subscribe_or_none()
                if pubsub is None:
                    continue
                # Changes published while we were not subscribed are lost: re-read what we cache.
                for service in list(self._cache):
                    await self._refresh_quietly(service, force=True)
            try:
                await self._handle_messages(pubsub)
            except (RedisError, OSError) as error:
                log.warning("lost the discovery change subscription, re-subscribing: %r", error)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            pubsub = None

    async def _handle_messages(self, pubsub: PubSub) -> None:
        """Re-read a service when it announces a change, and every cached one once it gets old."""
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._seconds_until_due())
            if message is not None and message.get("type") == "pmessage":
                service = as_text(message["channel"]).removeprefix(self._prefix)
                if service in self._cache:  # services nobody asked for here are not worth a read
                    await self._refresh_quietly(service, force=True)
            for service, cached in list(self._cache.items()):
                if not self._is_fresh(cached):
                    await self._refresh_quietly(service, force=False)

    def _seconds_until_due(self) -> float:
        if not self._cache:
            return self.refresh_seconds
        oldest = min(cached.checked_at for cached in self._cache.values())
        due_in = oldest + self.refresh_seconds - self._clock()
        return min(self.refresh_seconds, max(_MIN_WAKE_SECONDS, due_in))
