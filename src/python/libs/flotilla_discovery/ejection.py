"""Passive ejection: stop sending traffic for a while to an instance whose connections keep failing."""

from __future__ import annotations

from collections.abc import Callable

InstanceKey = tuple[str, str]  # (service, instance_id)

# An instance ejected this long ago and never heard of since is forgotten: it left the registry
# long before (its registration expired), or it was given calls again and failed anew.
_FORGET_AFTER_SECONDS = 3600.0


class PassiveEjection:
    """Counts consecutive failures per instance and ejects after ``after_failures`` of them.

    An ejection ends after ``seconds``, or at once when the instance registers again
    (``reinstate``), so a restarted instance is not kept out for the rest of a window its dead
    predecessor earned. An answer (``succeeded``) ends a failure streak, not an ejection: it may
    answer a request sent before the instance failed. Once its ejection has run out, an instance
    stays *suspect* (``is_failing``) until it registers again or answers a request sent after the
    ejection ended: a dead instance the registry still lists is not well again because time passed.

    Only non-default state is kept (a failure streak, an ejection or suspicion), and suspicions
    are forgotten an hour after their ejection ended, so instances that come and go leave nothing
    behind for long. Not thread-safe; meant for one event loop.
    """

    def __init__(self, *, after_failures: int, seconds: float, clock: Callable[[], float]) -> None:
        if after_failures < 1:
            raise ValueError(f"eject_after_failures must be at least 1, not {after_failures}")
        self.after_failures = after_failures
        self.seconds = seconds
        self._clock = clock
        self._failures: dict[InstanceKey, int] = {}
        # When the instance's ejection ends (or ended: then it is suspect), by ``clock``.
        self._ejected_until: dict[InstanceKey, float] = {}

    def succeeded(self, key: InstanceKey, *, sent_at: float | None = None) -> None:
        """The instance answered a request sent at ``sent_at`` (by ``clock``): its failure streak ends.

        Its ejection, or suspicion, ends too only when the request was sent after the ejection had
        ended (a probe of the instance as it is now); ``sent_at`` None counts as sent before.
        """
        self._failures.pop(key, None)
        until = self._ejected_until.get(key)
        if until is not None and sent_at is not None and sent_at >= until:
            del self._ejected_until[key]

    def reinstate(self, key: InstanceKey) -> None:
        """Forget the failures, any ejection and any suspicion of ``key`` (it registered again)."""
        self._failures.pop(key, None)
        self._ejected_until.pop(key, None)

    def failed(self, key: InstanceKey) -> None:
        if self.is_ejected(key):
            return  # late failures of requests sent before the ejection are the same outage
        failures = self._failures.get(key, 0) + 1
        if failures >= self.after_failures:
            self._failures.pop(key, None)  # back from ejection, it needs a full new streak
            now = self._clock()
            self._forget_old(now)
            self._ejected_until[key] = now + self.seconds
        else:
            self._failures[key] = failures

    def is_ejected(self, key: InstanceKey) -> bool:
        until = self._ejected_until.get(key)
        return until is not None and self._clock() < until

    def is_failing(self, key: InstanceKey) -> bool:
        """Whether ``key`` is on a failure streak, or suspect: ejected and not heard from well since."""
        return key in self._failures or key in self._ejected_until

    def _forget_old(self, now: float) -> None:
        for key in [k for k, until in self._ejected_until.items() if now - until > _FORGET_AFTER_SECONDS]:
            del self._ejected_until[key]
