"""A cache of the Redis registry, kept fresh by change notifications and periodic re-reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import redis.asyncio as redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from flotilla_discovery.errors import DiscoveryUnavailable
from flotilla_discovery.instance import Instance
from flotilla_discovery.redis_store import Change, RedisStore, as_text, channel_pattern, channel_prefix

log = logging.getLogger(__name__)

# Pause before re-subscribing after the notification connection failed (Redis down or restarting).
_RESUBSCRIBE_SECONDS = 1.0
# Shortest wait between periodic passes, so a clock that does not move cannot make a busy loop.
_MIN_WAKE_SECONDS = 0.05

_change_decoder = msgspec.json.Decoder(Change)


@dataclass
class _Cached:
    instances: list[Instance]
    checked_at: float  # when Redis was last asked, successfully or not
    unreachable: bool = False  # the last ask failed: wait a whole refresh_seconds before the next


class RedisResolver:
    """Instances from the Redis registry, cached per service.

    A service's list is read from Redis on first use and then re-read when its channel announces a
    change (a listener task started by ``start()``) and whenever it is ``refresh_seconds`` old, so
    a lost notification costs at most ``refresh_seconds`` of staleness; a service with no instance
    is re-read once it is ``empty_refresh_seconds`` old, so that even then the first instance to
    come back is found within about a second. While Redis is unreachable the last known list is
    served, and Redis is asked again at most every ``refresh_seconds`` per service. Without
    ``start()`` it still works, by age alone. The client is the caller's to close.

    Registration listeners (``add_registration_listener``) hear of every instance that registers,
    new or again under its old id (a restart), once the cached list holds it: from the registry's
    announcement, or from a re-read finding an instance id the cache did not have.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "flotilla",
        refresh_seconds: float = 5.0,
        empty_refresh_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_seconds = refresh_seconds
        self.empty_refresh_seconds = min(empty_refresh_seconds, refresh_seconds)
        self._client = client
        self._store = RedisStore(client, namespace)
        self._prefix = channel_prefix(namespace)
        self._pattern = channel_pattern(namespace)
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listener: asyncio.Task[None] | None = None
        self._closing = False
        self._registration_listeners: list[Callable[[Instance], None]] = []

    def add_registration_listener(self, listener: Callable[[Instance], None]) -> None:
        """Call ``listener(instance)`` when ``instance`` registers, new or again (see the class doc).

        Only services this resolver has been asked about are followed. The listener runs on the
        event loop inside a refresh; an exception it raises is logged and otherwise ignored.
        """
        self._registration_listeners.append(listener)

    async def start(self) -> None:
        """Subscribe to change notifications and start the listener task.

        Once it returns with Redis up, every change published afterwards reaches this cache. If
        Redis is down it does not raise: the listener keeps trying to subscribe in the background.
        """
        if self._listener is not None:
            return
        self._closing = False
        pubsub = await self._subscribe_or_none()
        self._listener = asyncio.create_task(self._listen(pubsub), name="flotilla-discovery-resolver")

    async def close(self) -> None:
        """Stop the listener task; the cache stays usable (refreshing by age only)."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        # Told to stop as well as cancelled: on Python 3.11 redis-py can swallow a cancellation (a
        # command's send is an asyncio.wait_for, which drops a cancellation that meets its result:
        # CPython gh-86296), and the listener would then run on and this wait never end.
        self._closing = True
        listener.cancel()
        # asyncio.wait, not ``await listener`` under suppress(CancelledError): that would take a
        # cancellation of the caller's own for the listener's, and swallow it too.
        await asyncio.wait((listener,))
        if not listener.cancelled():
            listener.result()  # an error that ended it, as before

    async def instances(self, service: str) -> list[Instance]:
        """Live instances of ``service``, sorted by instance id (a new list, safe to change).

        Raises DiscoveryUnavailable if Redis cannot be reached and nothing is cached for ``service``.
        Concurrent calls for one service share one read.
        """
        cached = self._cache.get(service)
        if cached is not None and self._is_fresh(cached):
            return list(cached.instances)
        return list(await self._refresh(service, force=False))

    def _max_age(self, cached: _Cached) -> float:
        return self.refresh_seconds if cached.instances or cached.unreachable else self.empty_refresh_seconds

    def _is_fresh(self, cached: _Cached) -> bool:
        return self._clock() - cached.checked_at < self._max_age(cached)

    async def _refresh(self, service: str, *, force: bool, announced: str | None = None) -> list[Instance]:
        """Re-read ``service`` unless fresh (or ``force``); ``announced`` is an id that just registered."""
        async with self._locks.setdefault(service, asyncio.Lock()):
            cached = self._cache.get(service)
            if not force and cached is not None and self._is_fresh(cached):
                return cached.instances  # another caller refreshed it while we waited
            try:
                found = [instance for instance in await self._store.live(service) if instance.routable]
            except (RedisError, OSError) as error:
                if cached is None:
                    raise DiscoveryUnavailable(service, f"registry unreachable: {error!r}") from error
                log.warning("registry unreachable, serving the last known instances of %s: %r", service, error)
                cached.checked_at = self._clock()  # so that callers don't each wait on a dead Redis
                cached.unreachable = True
                return cached.instances
            self._cache[service] = _Cached(found, self._clock())
            if cached is not None:  # a first read has no one to tell: nothing knew the service yet
                self._tell_registered(found, {instance.instance_id for instance in cached.instances}, announced)
            return found

    def _tell_registered(self, found: list[Instance], known_ids: set[str], announced: str | None) -> None:
        for instance in found:
            if instance.instance_id in known_ids and instance.instance_id != announced:
                continue
            for listener in self._registration_listeners:
                try:
                    listener(instance)
                except Exception:  # a listener's bug must not stop the cache from refreshing
                    log.exception("a discovery registration listener failed for %s", instance)

    async def _refresh_quietly(self, service: str, *, force: bool, announced: str | None = None) -> None:
        # Only a first read raises, and a cached service has had one; the guard is for a race with
        # a service being read for the first time, whose caller gets the error itself.
        with contextlib.suppress(DiscoveryUnavailable):
            await self._refresh(service, force=force, announced=announced)

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
        while not self._closing:
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
        """Re-read a service when it announces a change, and every cached one once it gets old.

        Returns once the resolver is closing (checked before every wait for a message).
        """
        while not self._closing:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._seconds_until_due())
            if message is not None and message.get("type") == "pmessage":
                service = as_text(message["channel"]).removeprefix(self._prefix)
                if service in self._cache:  # services nobody asked for here are not worth a read
                    await self._refresh_quietly(service, force=True, announced=_registered_id(message["data"]))
            for service, cached in list(self._cache.items()):
                if not self._is_fresh(cached):
                    await self._refresh_quietly(service, force=False)

    def _seconds_until_due(self) -> float:
        if not self._cache:
            return self.refresh_seconds
        next_due = min(cached.checked_at + self._max_age(cached) for cached in self._cache.values())
        return min(self.refresh_seconds, max(_MIN_WAKE_SECONDS, next_due - self._clock()))


def _registered_id(data: bytes | str) -> str | None:
    """The instance id of a "registered" announcement, else None (other changes, unreadable data)."""
    try:
        change = _change_decoder.decode(data)
    except msgspec.DecodeError:
        return None  # still worth the re-read the caller makes: something changed
    return change.instance_id if change.change == "registered" else None
