import asyncio

import pytest

from flotilla_kit.testing.redis import start_redis
from gateway.pipelined_redis import PipelinedRedis
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
    client = PipelinedRedis(server.url)
    yield RateLimiter(client, {"tight": RateClass(10, 60.0, 10), "loose": RateClass(1000, 1.0, 1000)})
    await client.close()
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


async def test_a_busy_caller_asks_redis_once_per_lease_not_per_request(limiter):
    decisions = [await limiter.check("loose", "caller:busy") for _ in range(500)]
    assert all(d.allowed for d in decisions)
    assert limiter.redis_calls < 100


async def test_a_denial_is_answered_locally_until_the_time_redis_named(limiter):
    for _ in range(10):
        assert (await limiter.check("tight", "caller:d")).allowed
    assert not (await limiter.check("tight", "caller:d")).allowed
    calls = limiter.redis_calls
    for _ in range(20):
        assert not (await limiter.check("tight", "caller:d")).allowed
    assert limiter.redis_calls == calls


async def test_two_gateways_leasing_never_admit_more_than_the_limit_between_them():
    server = start_redis()
    clients = [PipelinedRedis(server.url), PipelinedRedis(server.url)]
    # 200 a minute with bursts of 200: leases of up to 10 permits; no refill during the test.
    gateways = [RateLimiter(client, {"shared": RateClass(200, 60.0, 200)}) for client in clients]
    try:
        allowed = 0
        for _ in range(60):  # both busy, one after the other and at once
            results = await asyncio.gather(*(g.check("shared", "caller:x") for g in gateways for _ in range(5)))
            allowed += sum(d.allowed for d in results)
        assert allowed <= 200
        # Permits leased by one gateway and unspent are lost to the other, never more than a lease each.
        assert allowed >= 200 - 2 * 10
        assert sum(g.redis_calls for g in gateways) < 600
    finally:
        for client in clients:
            await client.close()
        server.close()
