"""Pytest fixtures for real servers, shared by every test suite: import them into a conftest.py.

    from flotilla_kit.testing.fixtures import database_url, postgres, redis, redis_server
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from flotilla_kit.testing.postgres import PostgresServer, start_postgres
from flotilla_kit.testing.redis import RedisServer, start_redis
from flotilla_redis.factory import create_redis


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test session; tests create their own databases in it."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    """URL of a new, empty database: a SQLite file, then a PostgreSQL database (tests run on both)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/service.db"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server per test session (tests that stop Redis start their own)."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client of the session's Redis, emptied first: each test sees only its own streams and keys."""
    client = create_redis(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()
