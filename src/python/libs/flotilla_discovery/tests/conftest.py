import pytest
import redis.asyncio as redis

from flotilla_kit.testing.fixtures import redis_server
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.redis import start_redis


def connect(url: str) -> redis.Redis:
    # Short connect timeout: outage tests hit a stopped server and should fail fast, then retry.
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)


@pytest.fixture
async def unreachable_client():
    """A client for a loopback port where no Redis listens."""
    client = connect(f"redis://127.0.0.1:{free_port()}/0")
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_server):
    client = connect(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def own_redis_server():
    """A server of the test's own, for tests that stop and start it."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
async def own_client(own_redis_server):
    client = connect(own_redis_server.url)
    yield client
    await client.aclose()
