"""Retry and circuit-breaker settings (immutable values, checked when built)."""

from __future__ import annotations

import msgspec


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When and how often a call is tried again.

    - ``max_attempts``: attempts per call, the first included (1 disables retries).
    - Backoff before attempt n+1 is uniform in [0, min(max_backoff, base_backoff * 2**(n-1))]
      seconds ("full jitter"), and never sleeps past the call's deadline.
    - Budget: per upstream service, retries within the last ``budget_window`` seconds may add at
      most ``budget_ratio`` of the calls made in that window, plus ``budget_min_per_second`` retries
      per second of window as a reserve so that a quiet service can still retry.
    - ``per_try_timeout``: cap of each attempt in seconds (None: an attempt may use all the time left
      before the deadline, so a timed-out attempt leaves no time for a retry).
    """

    max_attempts: int = 3
    base_backoff: float = 0.05
    max_backoff: float = 1.0
    budget_ratio: float = 0.2
    budget_min_per_second: float = 10.0
    budget_window: float = 10.0
    per_try_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoffs must not be negative")
        if self.budget_ratio < 0 or self.budget_min_per_second < 0 or self.budget_window <= 0:
            raise ValueError("budget_ratio and budget_min_per_second must be >= 0, budget_window > 0")
        if self.per_try_timeout is not None and self.per_try_timeout <= 0:
            raise ValueError(f"per_try_timeout must be positive, not {self.per_try_timeout}")


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a service's circuit opens, and how it recovers.

    The circuit opens on ``failure_threshold`` consecutive failed attempts, or when at least
    ``failure_rate_threshold`` of the last ``window_size`` attempts failed (judged only once the
    window is full, so a few early failures do not count as a rate; None disables the rate rule).
    The two rules catch a dead upstream quickly and a flapping one that never fails 5 times in a row.
    A failed attempt is a connection failure, a timeout or a 5xx answer; 4xx answers are successes.
    After ``open_seconds`` the circuit is half-open: up to ``half_open_max_calls`` probes go
    through at once, and the first probe to succeed closes it while any failure opens it again.
    """

    failure_threshold: int = 5
    failure_rate_threshold: float | None = 0.5
    window_size: int = 20
    open_seconds: float = 5.0
    half_open_max_calls: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {self.failure_threshold}")
        if self.failure_rate_threshold is not None and not 0 < self.failure_rate_threshold <= 1:
            raise ValueError(f"failure_rate_threshold must be in (0, 1], not {self.failure_rate_threshold}")
        if self.window_size < 1:
            raise ValueError(f"window_size must be at least 1, not {self.window_size}")
        if self.open_seconds < 0:
            raise ValueError(f"open_seconds must not be negative, not {self.open_seconds}")
        if self.half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be at least 1, not {self.half_open_max_calls}")
