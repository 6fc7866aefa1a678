"""Per-caller rate limits in Redis: GCRA in one Lua script, so concurrent gateways agree exactly."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import redis.asyncio as redis

# GCRA (generic cell rate algorithm): one key per caller and class holding the "theoretical
# arrival time". A request is allowed when it would not push that time more than the burst ahead
# of now. Atomic in Redis, exact under any concurrency, O(1) memory per caller.
_GCRA = """
local key = KEYS[1]
local interval = tonumber(ARGV[1])      -- microseconds between requests at the sustained rate
local burst = tonumber(ARGV[2])         -- requests allowed at once
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', key) or now)
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
"""


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


class RateLimiter:
    def __init__(
        self, client: redis.Redis, classes: dict[str, RateClass], *, namespace: str = "flotilla:ratelimit"
    ) -> None:
        self.classes = classes
        self.namespace = namespace
        self._script = client.register_script(_GCRA)

    async def check(self, rate_class: str, caller_key: str) -> Decision:
        """Count one request of ``caller_key`` against ``rate_class``; raises KeyError for an unknown class."""
        limits = self.classes[rate_class]
        allowed, wait_us = await self._script(
            keys=[f"{self.namespace}:{rate_class}:{caller_key}"], args=[limits.interval_us, limits.burst]
        )
        if allowed:
            return Decision(True, 0)
        return Decision(False, max(1, math.ceil(int(wait_us) / 1_000_000)))
