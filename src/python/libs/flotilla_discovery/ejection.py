"""Passive ejection: stop sending traffic for a while to an instance whose connections keep failing."""

from __future__ import annotations

from collections.abc import Callable

InstanceKey = tuple[str, str]  # (service, instance_id)


class PassiveEjection:
    """Counts consecutive failures per instance and ejects after ``after_failures`` of them.

    Only non-default state is kept (a failure streak, an ejection not yet over), so instances that
    come and go leave nothing behind. Not thread-safe; meant for one event loop.
    """

    def __init__(self, *, after_failures: int, seconds: float, clock: Callable[[], float]) -> None:
        if after_failures < 1:
            raise ValueError(f"eject_after_failures must be at least 1, not {after_failures}")
        self.after_failures = after_failures
        self.seconds = seconds
        self._clock = clock
        self._failures: dict[InstanceKey, int] = {}
        self._ejected_until: dict[InstanceKey, float] = {}

    def succeeded(self, key: InstanceKey) -> None:
        self._failures.pop(key, None)

    def failed(self, key: InstanceKey) -> None:
        if self.is_ejected(key):
            return  # late failures of requests sent before the ejection are the same outage
        failures = self._failures.get(key, 0) + 1
        if failures >= self.after_failures:
            self._failures.pop(key, None)  # back from ejection, it needs a full new streak
            self._ejected_until[key] = self._clock() + self.seconds
        else:
            self._failures[key] = failures

    def is_ejected(self, key: InstanceKey) -> bool:
        until = self._ejected_until.get(key)
        if until is None:
            return False
        if self._clock() >= until:
            del self._ejected_until[key]
            return False
        return True
