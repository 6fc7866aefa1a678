"""Pytest fixtures for real servers, shared by every test suite: import them into a conftest.py.

    from flotilla_kit.testing.fixtures import database_url, postgres, redis_server
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from flotilla_kit.testing.postgres import PostgresServer, start_postgres
from flotilla_kit.testing.redis import RedisServer, start_redis


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
