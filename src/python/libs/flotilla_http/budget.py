"""Retry budget: caps retries to a share of recent traffic so that retries cannot multiply an outage."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable


class RetryBudget:
    """A token bucket whose tokens expire: each call deposits ``ratio`` tokens, each retry spends one.

    Deposits and spends are kept in one-second slots over the last ``window`` seconds, so the
    balance is ``ratio * calls + min_per_second * window - retries`` over that window. When a whole
    service fails, retries therefore stop at about ``ratio`` extra load instead of ``max_attempts``
    times the load. Not thread-safe: one event loop.
    """

    def __init__(self, *, ratio: float, min_per_second: float, window: float, clock: Callable[[], float]) -> None:
        self._ratio = ratio
        self._reserve = min_per_second * window
        self._window = window
        self._clock = clock
        self._slots: deque[list[int]] = deque()  # [second, calls, retries], oldest first
        self._calls = 0
        self._retries = 0

    def record_call(self) -> None:
        """Count one call (its first attempt)."""
        self._slot()[1] += 1
        self._calls += 1

    def try_spend_retry(self) -> bool:
        """Take a token for one retry; False when the budget is spent (the retry must not happen)."""
        slot = self._slot()
        if self._retries + 1 > self._ratio * self._calls + self._reserve:
            return False
        slot[2] += 1
        self._retries += 1
        return True

    def _slot(self) -> list[int]:
        second = math.floor(self._clock())
        oldest_kept = second - math.ceil(self._window) + 1
        while self._slots and self._slots[0][0] < oldest_kept:
            _, calls, retries = self._slots.popleft()
            self._calls -= calls
            self._retries -= retries
        if not self._slots or self._slots[-1][0] != second:
            self._slots.append([second, 0, 0])
        return self._slots[-1]
