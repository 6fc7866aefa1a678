"""Choosing one instance per call: round robin or power of two choices, skipping ejected instances."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from typing import Literal

from flotilla_discovery.ejection import InstanceKey, PassiveEjection
from flotilla_discovery.errors import NoInstances
from flotilla_discovery.instance import Instance
from flotilla_discovery.resolver import RegistrationNotifier, Resolver

__all__ = ["Balancer", "NoInstances"]

Strategy = Literal["round_robin", "p2c"]


class Balancer:
    """Picks an instance of a service for each call, from what ``resolver`` knows.

    ``p2c`` (power of two choices) picks two distinct random candidates and takes the one with
    fewer in-flight requests, which steers load away from slow instances without global state;
    it needs callers to ``acquire``/``release`` around each request. ``round_robin`` cycles through
    the candidates in the resolver's order.

    Callers report connection-level outcomes with ``report_success``/``report_failure``; after
    ``eject_after_failures`` consecutive failures an instance gets no traffic for
    ``ejection_seconds``, or until it registers again. An instance that has just registered
    (again) is preferred to instances that are failing (on a failure streak, or ejected before and
    not heard from well since) until it is reported on (for at most ``ejection_seconds``), so the
    first call after an outage goes to the instance that came back rather than to a dead one the
    registry still lists. Registrations come from the resolver
    when it announces them (a ``RegistrationNotifier`` such as ``RedisResolver``), or through
    ``instance_registered``. ``clock`` and ``rng`` are injectable for deterministic tests. All
    methods are meant to be used from one event loop (the sync ones never await, so they need no
    lock).
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        strategy: Strategy = "p2c",
        eject_after_failures: int = 3,
        ejection_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if strategy not in ("round_robin", "p2c"):
            raise ValueError(f"unknown strategy {strategy!r}")
        self.resolver = resolver
        self.strategy = strategy
        self._ejection = PassiveEjection(after_failures=eject_after_failures, seconds=ejection_seconds, clock=clock)
        self._clock = clock
        self._rng = rng or random.Random()
        self._in_flight: dict[InstanceKey, int] = {}
        self._next_index: dict[str, int] = {}
        self._registered_at: dict[InstanceKey, float] = {}  # registered, and not reported on since
        self._registration_listeners: dict[str, list[Callable[[], None]]] = {}
        if isinstance(resolver, RegistrationNotifier):
            resolver.add_registration_listener(self.instance_registered)

    async def choose(self, service: str, *, exclude: Collection[str] = ()) -> Instance:
        """An instance of ``service`` to call, not one of the ``exclude``d instance ids.

        Pass the ids already tried to retry on another instance. Ejected instances are skipped.
        Raises NoInstances when no instance is left: none known, all excluded, or all ejected
        (DiscoveryUnavailable, a NoInstances, when the resolver cannot reach its source).
        """
        known = await self.resolver.instances(service)
        candidates = [
            instance
            for instance in known
            if instance.instance_id not in exclude and not self._ejection.is_ejected(_key(instance))
        ]
        if not candidates:
            if not known:
                raise NoInstances(service, "no instance registered")
            raise NoInstances(service, f"all {len(known)} instances are excluded or ejected")
        candidates = self._prefer_registered(candidates)
        if self.strategy == "round_robin":
            return self._round_robin(service, candidates)
        return self._power_of_two_choices(candidates)

    def acquire(self, instance: Instance) -> float:
        """Count a request to ``instance`` as in flight (call before sending it).

        Returns when it is sent, by the balancer's clock: give it to ``report_success``.
        """
        key = _key(instance)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        return self._clock()

    def release(self, instance: Instance) -> None:
        """Count that request as done (call once per ``acquire``, also when it failed)."""
        key = _key(instance)
        remaining = self._in_flight.get(key, 0) - 1
        if remaining > 0:
            self._in_flight[key] = remaining
        else:
            self._in_flight.pop(key, None)  # also forgives an unmatched release rather than go negative

    def in_flight(self, instance: Instance) -> int:
        """Requests to ``instance`` acquired and not yet released."""
        return self._in_flight.get(_key(instance), 0)

    def report_success(self, instance: Instance, *, sent_at: float | None = None) -> None:
        """``instance`` answered (any HTTP status) the request sent at ``sent_at`` (from ``acquire``).

        Its failure streak ends. Its ejection, or the suspicion left by one, ends only when the
        request was sent after the ejection had ended: a late answer to a request sent before the
        instance failed says nothing of it now (``sent_at`` None counts as such an answer).
        """
        key = _key(instance)
        self._ejection.succeeded(key, sent_at=sent_at)
        self._registered_at.pop(key, None)

    def report_failure(self, instance: Instance) -> None:
        """``instance`` could not be reached (connect error, reset, timeout before any answer).

        HTTP error statuses are not connection failures: report them as successes here, and leave
        them to the caller's retry and circuit-breaker logic.
        """
        key = _key(instance)
        self._ejection.failed(key)
        self._registered_at.pop(key, None)

    def instance_registered(self, instance: Instance) -> None:
        """``instance`` registered, new or again (e.g. restarted under its old id): it is back.

        Its ejection and failure streak are forgotten, it is preferred to failing instances until it
        is reported on, and the listeners of its service are told (an open circuit may probe now).
        """
        key = _key(instance)
        self._ejection.reinstate(key)
        now = self._clock()
        # Marks of instances never called (they died first) would otherwise pile up.
        for stale in [other for other, at in self._registered_at.items() if not self._is_recent(at, now)]:
            del self._registered_at[stale]
        self._registered_at[key] = now
        for listener in self._registration_listeners.get(instance.service, ()):
            listener()

    def add_registration_listener(self, service: str, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever an instance of ``service`` registers (see ``instance_registered``).

        The listener runs synchronously on the event loop and must not raise.
        """
        self._registration_listeners.setdefault(service, []).append(listener)

    def remove_registration_listener(self, service: str, listener: Callable[[], None]) -> None:
        """Stop calling ``listener`` (added with ``add_registration_listener``); unknown ones are ignored."""
        listeners = self._registration_listeners.get(service, [])
        if listener in listeners:
            listeners.remove(listener)
        if not listeners:
            self._registration_listeners.pop(service, None)

    def _prefer_registered(self, candidates: list[Instance]) -> list[Instance]:
        """Without the failing candidates, when one of them has just registered.

        A registration clears the failing and a report clears the mark, so the result is never empty.
        """
        if not self._registered_at:
            return candidates
        now = self._clock()
        if not any(self._is_recent(self._registered_at.get(_key(instance)), now) for instance in candidates):
            return candidates
        return [instance for instance in candidates if not self._ejection.is_failing(_key(instance))]

    def _is_recent(self, registered_at: float | None, now: float) -> bool:
        return registered_at is not None and now - registered_at < self._ejection.seconds

    def _round_robin(self, service: str, candidates: list[Instance]) -> Instance:
        index = self._next_index.get(service, 0)
        # Wrapping here keeps the counter small; when the list changes, the cycle merely shifts.
        self._next_index[service] = (index + 1) % len(candidates)
        return candidates[index % len(candidates)]

    def _power_of_two_choices(self, candidates: list[Instance]) -> Instance:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(candidates, 2)
        return second if self.in_flight(second) < self.in_flight(first) else first


def _key(instance: Instance) -> InstanceKey:
    return (instance.service, instance.instance_id)
