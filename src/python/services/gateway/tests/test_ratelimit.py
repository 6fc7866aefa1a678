import asyncio

import pytest

from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually
from flotilla_redis.pipelined import PipelinedRedis
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


async def test_concurrent_requests_of_one_caller_get_exactly_the_limit(limiter):
    """150 at once against leased=100/3600,burst=100: they share lease fetches, and no permit leased is lost.

    An hour's period: a permit comes back every 36 s, never while the test runs, however slow the machine.
    """
    limiter.classes["leased"] = RateClass(100, 3600.0, 100)
    first = await limiter.check("leased", "caller:crowd")  # the caller is known: the next fetches lease ahead
    decisions = [first, *await asyncio.gather(*(limiter.check("leased", "caller:crowd") for _ in range(149)))]
    assert sum(d.allowed for d in decisions) == 100
    assert all(d.retry_after_seconds >= 1 for d in decisions if not d.allowed)
    assert limiter.redis_calls <= 10  # one fetch at a time for the caller, not one per request


async def test_a_waiting_request_cancelled_does_not_stall_the_callers_next_ones(limiter):
    limiter.classes["leased"] = RateClass(100, 3600.0, 100)
    first = asyncio.ensure_future(limiter.check("leased", "caller:gone"))
    waiting = [asyncio.ensure_future(limiter.check("leased", "caller:gone")) for _ in range(5)]
    await asyncio.sleep(0)  # let them all queue behind the first one's fetch
    for task in waiting:
        task.cancel()
    assert (await first).allowed
    assert (await asyncio.wait_for(limiter.check("leased", "caller:gone"), timeout=5)).allowed


async def test_a_failing_fetch_fails_every_request_waiting_on_it_and_the_next_one_fetches_again():
    server = start_redis()
    client = PipelinedRedis(server.url, retry_interval=0.05)
    limiter = RateLimiter(client, {"leased": RateClass(100, 3600.0, 100)})
    try:
        await client.ping()
        server.kill()
        results = await asyncio.gather(
            *(limiter.check("leased", "caller:outage") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, OSError) for r in results), results
        server.start()

        async def allowed_again() -> bool:
            try:
                return (await limiter.check("leased", "caller:outage")).allowed
            except OSError:
                return False

        await eventually(allowed_again, timeout=10, what="the limiter answers again")
    finally:
        await client.close()
        server.close()


async def test_a_fetching_request_cancelled_hands_the_fetch_to_one_waiting(limiter):
    limiter.classes["leased"] = RateClass(100, 3600.0, 100)
    fetching = asyncio.ensure_future(limiter.check("leased", "caller:impatient"))
    waiting = [asyncio.ensure_future(limiter.check("leased", "caller:impatient")) for _ in range(5)]
    await asyncio.sleep(0)  # the first is in its fetch, the others queued behind it
    fetching.cancel()
    decisions = await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
    assert all(d.allowed for d in decisions)
