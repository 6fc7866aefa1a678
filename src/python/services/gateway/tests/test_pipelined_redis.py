import asyncio
import signal
import time

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.redis import start_redis
from gateway.pipelined_redis import PipelinedRedis, RedisUnavailable

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


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
    client = PipelinedRedis(f"redis://127.0.0.1:{port}/0", retry_interval=0.2)
    with pytest.raises(RedisUnavailable, match="cannot connect"):
        await client.ping()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable, match="moments ago"):
        await client.ping()
    assert time.monotonic() - started < 0.1  # no second connect attempt while it is known down
    server = start_redis(port=port)
    try:
        await asyncio.sleep(0.25)
        await client.ping()
        server.kill()
        with pytest.raises(RedisUnavailable):
            await client.ping()
        server.start()
        await asyncio.sleep(0.25)
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
    client = PipelinedRedis(server.url, reply_timeout=0.3, retry_interval=0.5)
    await client.ping()
    server.process.send_signal(signal.SIGSTOP)  # alive, connected, silent: a partition
    try:
        with pytest.raises(RedisUnavailable, match="no answer"):
            await client.ping()
        started = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await client.ping()
        assert time.monotonic() - started < 0.1  # fails fast instead of waiting out its timeout
    finally:
        server.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(0.6)
    await client.ping()
    await client.close()
