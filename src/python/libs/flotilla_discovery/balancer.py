"""Choosing one instance per call: round robin or power of two choices, skipping ejected instances."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from typing import Literal

from flotilla_discovery.ejection import InstanceKey, PassiveEjection
from flotilla_discovery.errors import NoInstances
from flotilla_discovery.instance import Instance
from flotilla_discovery.resolver import Resolver

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
    ``ejection_seconds``. ``rng`` is injectable for deterministic tests. All methods are meant to be
    used from one event loop (the sync ones never await, so they need no lock).
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
        self._rng = rng or random.Random()
        self._in_flight: dict[InstanceKey, int] = {}
        self._next_index: dict[str, int] = {}

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
        if self.strategy == "round_robin":
            return self._round_robin(service, candidates)
        return self._power_of_two_choices(candidates)

    def acquire(self, instance: Instance) -> None:
        """Count a request to ``instance`` as in flight (call before sending it)."""
        key = _key(instance)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1

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

    def report_success(self, instance: Instance) -> None:
        """``instance`` answered (any HTTP status): its failure streak ends."""
        self._ejection.succeeded(_key(instance))

    def report_failure(self, instance: Instance) -> None:
        """``instance`` could not be reached (connect error, reset, timeout before any answer).

        HTTP error statuses are not connection failures: report them as successes here, and leave
        them to the caller's retry and circuit-breaker logic.
        """
        self._ejection.failed(_key(instance))

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
