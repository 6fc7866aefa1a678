import asyncio

import pytest
import redis.asyncio as redis

from flotilla_kit.testing.redis import start_redis
from gateway.ratelimit import RateClass, RateLimiter, parse_rate_limits


def test_rate_classes_are_parsed():
    assert parse_rate_limits("default=50/1,burst=100; strict=5/60") == {
        "default": RateClass(50, 1.0, 100),
        "strict": RateClass(5, 60.0, 5),
    }


@pytest.mark.parametrize("spec", ["default", "x=0/1", "x=5/0", "x=5/1,burst", "X=5/1"])
def test_bad_rate_classes_are_refused(spec):
    with pytest.raises(ValueError, match="bad rate class"):
        parse_rate_limits(spec)


@pytest.fixture
async def limiter():
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    yield RateLimiter(client, {"tight": RateClass(10, 60.0, 10), "loose": RateClass(1000, 1.0, 1000)})
    await client.aclose()
    server.close()


async def test_exactly_the_burst_passes_under_concurrent_requests(limiter):
    decisions = await asyncio.gather(*(limiter.check("tight", "caller:u1") for _ in range(60)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert all(1 <= d.retry_after_seconds <= 6 for d in decisions if not d.allowed)


async def test_callers_and_classes_have_separate_budgets(limiter):
    for caller in ("caller:a", "caller:b"):
        assert sum([(await limiter.check("tight", caller)).allowed for _ in range(12)]) == 10
    assert (await limiter.check("loose", "caller:a")).allowed
