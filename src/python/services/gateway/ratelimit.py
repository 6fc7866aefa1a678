"""Per-caller rate limits in Redis: GCRA in one Lua script, so concurrent gateways never admit more
than a limit allows between them.

A busy caller does not cost a Redis round trip per request: the script can hand out several
permits at once (a lease), which this gateway then spends locally for up to ``LEASE_SECONDS``.
The lease doubles while the caller spends it in time (as TCP's slow start grows its window),
halves when it lapses, and is capped at a twentieth of the class's burst; Redis never grants more
than the limit has left. A permit leased by one gateway and not spent there is lost, so gateways
sharing a caller never admit more than the limit between them, at worst a lease fewer each. A
denial is remembered until the time Redis named, which is exact: other gateways' admissions can
only push that time later.

Concurrent requests of one caller share one fetch (single flight): while a fetch is in flight,
the caller's other requests wait for it, and it asks Redis for their permits too. The permits it
brings are handed to the waiting requests directly, with no lapse in between, so a crowd of
requests is admitted up to exactly the limit; when more wait than it brought, the first of them
fetches next.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from flotilla_redis.pipelined import PipelinedRedis

# GCRA (generic cell rate algorithm): one key per caller and class holding the "theoretical
# arrival time" (TAT). A request is allowed when it would not push that time more than the burst
# ahead of now; taking k permits at once pushes it k intervals. Atomic in Redis, exact under any
# concurrency, O(1) memory per caller.
_GCRA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])      -- microseconds between requests at the sustained rate
local burst = tonumber(ARGV[2])         -- requests allowed at once
local wanted = tonumber(ARGV[3])        -- permits asked for (a lease); at least one is needed
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local available = math.floor((now + burst * interval - tat) / interval)
if available < 1 then
  return {0, tat + interval - burst * interval - now}
end
local granted = math.min(wanted, available)
local new_tat = tat + granted * interval
redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {granted, 0}
"""
# How long leased permits stay spendable, and so how much of a caller's rate one lease covers.
LEASE_SECONDS = 0.1
_MAX_CALLERS = 10_000  # local states kept before expired ones are swept


@dataclass(frozen=True)
class RateClass:
    requests: int
    per_seconds: float
    burst: int

    @property
    def interval_us(self) -> int:
        return max(1, round(self.per_seconds * 1_000_000 / self.requests))


_CLASS = re.compile(r"^\s*([a-z][a-z0-9_-]*)\s*=\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(?:,\s*burst\s*=\s*(\d+)\s*)?$")


def parse_rate_limits(spec: str) -> dict[str, RateClass]:
    """Parse "default=50/1,burst=100;strict=5/1"; raises ValueError naming the bad part."""
    classes: dict[str, RateClass] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        found = _CLASS.match(part)
        if not found:
            raise ValueError(f"bad rate class {part!r}: expected name=REQUESTS/SECONDS[,burst=N]")
        name, requests, seconds, burst = found.groups()
        if int(requests) < 1 or float(seconds) <= 0:
            raise ValueError(f"bad rate class {part!r}: requests and seconds must be positive")
        classes[name] = RateClass(int(requests), float(seconds), int(burst or requests))
    return classes


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int  # whole seconds, as Retry-After wants; 0 when allowed


@dataclass
class _CallerState:
    """What this gateway knows of one caller and class between trips to Redis."""

    permits: int = 0  # leased, not spent yet
    expires: float = 0.0  # when unspent permits lapse
    denied_until: float = 0.0
    lease: int = 1
    fetching: bool = False  # a request of this caller is asking Redis for permits
    # Requests waiting on that fetch: each gets a Decision, or None to say it fetches next. Made on
    # first use: most callers never have two requests at once, and there may be many callers.
    waiters: deque[asyncio.Future[Decision | None]] | None = None

    def settle_waiters(self, settle: Callable[[asyncio.Future[Decision | None]], None], most: int = -1) -> int:
        """Settle up to ``most`` (all: -1) waiting requests still there, first come first; returns how many."""
        settled = 0
        waiters = self.waiters
        while waiters and settled != most:
            waiter = waiters.popleft()
            if not waiter.done():  # a request gone (its caller disconnected) is skipped
                settle(waiter)
                settled += 1
        return settled

    def next_lease(self, now: float, cap: int) -> int:
        """Permits to ask for: doubling while leases are spent before they lapse, halving when not."""
        self.lease = min(cap, self.lease * 2) if now < self.expires else max(1, self.lease // 2)
        return self.lease


_ALLOWED = Decision(True, 0)


class RateLimiter:
    def __init__(
        self, redis: PipelinedRedis, classes: dict[str, RateClass], *, namespace: str = "flotilla:ratelimit"
    ) -> None:
        self.classes = classes
        self.namespace = namespace
        self.redis_calls = 0
        self._redis = redis
        self._callers: dict[str, _CallerState] = {}
        self._next_sweep = 0.0

    async def check(self, rate_class: str, caller_key: str) -> Decision:
        """Count one request of ``caller_key`` against ``rate_class``.

        Concurrent checks of one caller share one Redis call at a time (see above), and each raises
        what that call raised: KeyError for an unknown class, RedisUnavailable (an OSError) or
        ResponseError.
        """
        limits = self.classes[rate_class]
        key = f"{self.namespace}:{rate_class}:{caller_key}"
        now = time.monotonic()
        state = self._callers.get(key)
        if state is None:
            self._sweep(now)
            state = self._callers[key] = _CallerState()
        elif state.permits > 0 and now < state.expires:
            state.permits -= 1
            return _ALLOWED
        elif now < state.denied_until:
            return Decision(False, max(1, math.ceil(state.denied_until - now)))
        if state.fetching:
            decision = await _wait_for_fetch(state)
            if decision is not None:
                return decision
        state.fetching = True  # this request fetches now (or was handed the fetch by the last one)
        return await self._fetch(state, key, limits)

    async def _fetch(self, state: _CallerState, key: str, limits: RateClass) -> Decision:
        """Ask Redis for this request's permit, the waiting requests' ones and a lease ahead; hand them out."""
        try:
            now = time.monotonic()
            # The waiting requests' permits are spent as soon as they come: asking for them is no lease.
            waiting = len(state.waiters) if state.waiters else 0
            wanted = max(state.next_lease(now, cap=max(1, limits.burst // 20)), 1 + waiting)
            self.redis_calls += 1
            granted, wait_us = await self._redis.eval_script(
                _GCRA, keys=[key], args=[limits.interval_us, limits.burst, wanted]
            )
        except asyncio.CancelledError:
            _hand_over_fetch(state)  # this request is gone; the ones waiting on it are not
            raise
        except Exception as exc:
            # Each waiting request fails as its own fetch would have; the next request fetches again.
            state.fetching = False
            error = exc  # the name of an except clause is not for closures
            state.settle_waiters(lambda waiter: waiter.set_exception(error))
            raise
        now = time.monotonic()
        if granted:
            spare = int(granted) - 1
            if spare:
                spare -= state.settle_waiters(lambda waiter: waiter.set_result(_ALLOWED), most=spare)
            state.permits = (state.permits if now < state.expires else 0) + spare
            state.expires = now + LEASE_SECONDS
            decision = _ALLOWED
        else:
            wait = int(wait_us) / 1_000_000
            state.denied_until = now + wait
            decision = Decision(False, max(1, math.ceil(wait)))
            state.settle_waiters(lambda waiter: waiter.set_result(decision))  # Redis had none for them either
        _hand_over_fetch(state)
        return decision

    def _sweep(self, now: float) -> None:
        # Many callers come once (anonymous IPs): forget the ones with nothing left to remember.
        if len(self._callers) < _MAX_CALLERS or now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        for key in [
            k
            for k, s in self._callers.items()
            if s.expires <= now and s.denied_until <= now and not s.fetching and not s.waiters
        ]:
            del self._callers[key]


async def _wait_for_fetch(state: _CallerState) -> Decision | None:
    """The decision the fetch in flight made for this request, or None when this request must fetch next."""
    waiter: asyncio.Future[Decision | None] = asyncio.get_running_loop().create_future()
    if state.waiters is None:
        state.waiters = deque()
    state.waiters.append(waiter)
    try:
        return await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled() and waiter.result() is None:
            _hand_over_fetch(state)  # it was this request's turn to fetch: pass it on, or no one would
        raise


def _hand_over_fetch(state: _CallerState) -> None:
    """The fetch is done: the first request still waiting (more waited than it brought) fetches next."""
    if not state.settle_waiters(lambda waiter: waiter.set_result(None), most=1):
        state.fetching = False
