import asyncio
import signal

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.redis import start_redis
from flotilla_redis.pipelined import PipelinedRedis, RedisUnavailable

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


class Clock:
    """Time that moves only when the test says so: the retry interval passes exactly when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server():
    server = start_redis()
    yield server
    server.close()


async def test_concurrent_calls_get_their_own_answers_in_one_connection(server):
    client = PipelinedRedis(server.url)
    answers = await asyncio.gather(*(client.execute("ECHO", f"call-{i}") for i in range(500)))
    assert answers == [f"call-{i}".encode() for i in range(500)]
    async with redis.Redis.from_url(server.url) as plain:
        clients = [c for c in await plain.client_list() if c["cmd"] == "echo"]
    assert len(clients) == 1
    await client.close()


async def test_a_script_redis_forgot_is_sent_again_whole(server):
    client = PipelinedRedis(server.url)
    assert await client.eval_script(INCR_BY, ["n"], [2]) == 2
    await client.execute("SCRIPT", "FLUSH")
    assert await client.eval_script(INCR_BY, ["n"], [3]) == 5
    await client.close()


async def test_error_replies_raise_and_leave_the_connection_usable(server):
    client = PipelinedRedis(server.url)
    await client.execute("SET", "s", "text")
    with pytest.raises(ResponseError, match="not an integer"):
        await client.execute("INCR", "s")
    assert await client.execute("GET", "s") == b"text"
    await client.close()


async def test_the_url_chooses_the_database_and_the_password(server):
    async with redis.Redis.from_url(server.url) as plain:
        await plain.config_set("requirepass", "s3cret")
        client = PipelinedRedis(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        await client.execute("SET", "where", "db3")
        await plain.execute_command("AUTH", "s3cret")
        await plain.execute_command("SELECT", "3")
        assert await plain.get("where") == b"db3"
        await client.close()
        refused = PipelinedRedis(f"redis://:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(RedisUnavailable, match="set-up"):
            await refused.ping()
        await plain.config_set("requirepass", "")


async def test_an_unreachable_redis_fails_fast_and_is_found_again_when_back():
    port = free_port()
    clock = Clock()
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", retry_interval=5.0, clock=clock)
    with pytest.raises(RedisUnavailable, match="cannot connect"):
        await client.ping()
    # Known down: the next call fails without trying to connect, so without waiting for a connect.
    with pytest.raises(RedisUnavailable, match="moments ago"):
        await client.ping()
    server = start_redis(port=port)
    try:
        with pytest.raises(RedisUnavailable, match="moments ago"):
            await client.ping()  # back already, but the retry interval has not passed
        clock.advance(5.0)
        await client.ping()
        server.kill()
        with pytest.raises(RedisUnavailable):
            await client.ping()
        server.start()
        clock.advance(5.0)
        await client.ping()
    finally:
        await client.close()
        server.close()


def test_urls_that_are_not_redis_are_refused():
    with pytest.raises(ValueError, match="redis://"):
        PipelinedRedis("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="database number"):
        PipelinedRedis("redis://127.0.0.1:6379/x")


async def test_a_redis_that_stops_answering_is_given_up_on_fast(server):
    clock = Clock()
    client = PipelinedRedis(server.url, retry_interval=5.0, clock=clock)
    await client.ping()
    # Short only while Redis is stopped: the calls to a live Redis must not race a short timeout.
    client.reply_timeout = 0.3
    server.process.send_signal(signal.SIGSTOP)  # alive, connected, silent: a partition
    try:
        with pytest.raises(RedisUnavailable, match="no answer"):
            await client.ping()
        # Given up on: the next call fails at once, not after waiting out a reply timeout of its own.
        with pytest.raises(RedisUnavailable, match="moments ago"):
            await client.ping()
    finally:
        server.process.send_signal(signal.SIGCONT)
    client.reply_timeout = 2.0
    clock.advance(5.0)
    await client.ping()
    await client.close()
