"""Circuit breaker per upstream service: stop calling a service that keeps failing, probe it later."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from flotilla_discovery.errors import DiscoveryUnavailable, NoInstances
from flotilla_http.errors import CircuitOpen
from flotilla_http.policies import BreakerPolicy


class BreakerState(enum.IntEnum):
    """Values are those of the state gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Permit(NamedTuple):
    """Leave to make one attempt; hand it back with ``record`` or ``abandon``."""

    generation: int
    probe: bool


Transition = Callable[[str, BreakerState, BreakerState], None]


class CircuitBreaker:
    """The circuit of one service, following ``BreakerPolicy`` (see there for the rules).

    Each state change starts a new generation; outcomes of attempts let through in an earlier
    generation are ignored, so a slow success from before the circuit opened cannot close it, and
    late failures cannot reopen a circuit a probe has just closed. ``clock`` is injectable for tests.
    Not thread-safe: one event loop (no method awaits).

    Two rules keep recovery from waiting on timers that no longer mean anything: an instance
    registering (``instance_registered``) half-opens an open circuit at once, since the window was
    sized for instances that have just been replaced; and a probe that finds no instance to call
    (``record_no_instance``) is given back rather than counted as failed, so the circuit stays
    half-open and the next call probes as soon as an instance is there, instead of another window.
    While no instance is there, calls still fail fast: finding none takes no network round trip.
    """

    def __init__(
        self,
        service: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float],
        on_transition: Transition | None = None,
    ) -> None:
        self.service = service
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._window: deque[bool] = deque(maxlen=policy.window_size)  # True = failed
        self._window_failures = 0
        self._probes_in_flight = 0

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose time is up reports half-open)."""
        self._half_open_if_due()
        return self._state

    def acquire(self) -> Permit:
        """Leave for one attempt. Raises CircuitOpen when the circuit is open, or half-open with all
        probe slots taken."""
        self._half_open_if_due()
        if self._state is BreakerState.CLOSED:
            return Permit(self._generation, probe=False)
        if self._state is BreakerState.HALF_OPEN and self._probes_in_flight < self._policy.half_open_max_calls:
            self._probes_in_flight += 1
            return Permit(self._generation, probe=True)
        retry_after = max(0.0, self._opened_at + self._policy.open_seconds - self._clock())
        raise CircuitOpen(self.service, retry_after)

    def record(self, permit: Permit, *, failed: bool) -> None:
        """The outcome of the attempt made with ``permit``."""
        if permit.generation != self._generation:
            return
        if permit.probe:
            self._probes_in_flight -= 1
            self._move(BreakerState.OPEN if failed else BreakerState.CLOSED)
            return
        self._consecutive_failures = self._consecutive_failures + 1 if failed else 0
        if len(self._window) == self._window.maxlen and self._window[0]:
            self._window_failures -= 1
        self._window.append(failed)
        self._window_failures += failed
        if self._tripped():
            self._move(BreakerState.OPEN)

    def abandon(self, permit: Permit) -> None:
        """The attempt made with ``permit`` ended without telling anything (cancelled, never sent)."""
        if permit.probe and permit.generation == self._generation:
            self._probes_in_flight -= 1

    def record_no_instance(self, permit: Permit, error: NoInstances) -> None:
        """The attempt made with ``permit`` found no instance to call (``error`` says why).

        A closed circuit counts it as a failure: for callers the service is down. A probe is given
        back (nothing was probed) unless the discovery source itself is unreachable
        (DiscoveryUnavailable), which does cost a round trip per call and so opens the circuit again.
        """
        if permit.probe and not isinstance(error, DiscoveryUnavailable):
            self.abandon(permit)
        else:
            self.record(permit, failed=True)

    def instance_registered(self) -> None:
        """An instance of the service registered (new, or back after a restart): probe it now.

        An open circuit half-opens at once; a half-open one starts a new generation, freeing the
        probe slots that probes sent elsewhere (to an instance the registry still lists but that is
        dead) would hold until they fail. A closed circuit is left alone. Every registration lets
        at most ``half_open_max_calls`` calls through, so a crash-looping instance cannot flood the
        service with traffic.
        """
        self._half_open_if_due()
        if self._state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN)
        elif self._state is BreakerState.HALF_OPEN and self._probes_in_flight:
            self._generation += 1
            self._probes_in_flight = 0

    def _tripped(self) -> bool:
        policy = self._policy
        if self._consecutive_failures >= policy.failure_threshold:
            return True
        if policy.failure_rate_threshold is None or len(self._window) < policy.window_size:
            return False
        return self._window_failures / len(self._window) >= policy.failure_rate_threshold

    def _half_open_if_due(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self._policy.open_seconds:
            self._move(BreakerState.HALF_OPEN)

    def _move(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._generation += 1
        self._probes_in_flight = 0
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        if new is BreakerState.CLOSED:
            self._consecutive_failures = 0
            self._window.clear()
            self._window_failures = 0
        if self._on_transition is not None:
            self._on_transition(self.service, old, new)
