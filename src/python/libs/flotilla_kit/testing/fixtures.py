"""Pytest fixtures for real servers, shared by every test suite: import them into a conftest.py.

    from flotilla_kit.testing.fixtures import postgres, redis_server  # noqa: F401
"""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis server per test session (tests that stop Redis start their own)."""
    server = start_redis()
    yield server
    server.close()
