import pytest
from console.app import create_app
from console.settings import ConsoleSettings
from litestar.testing import TestClient

from flotilla_kit.testing.fixtures import redis, redis_server

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}


def console_settings(tmp_path, redis_server, **overrides) -> ConsoleSettings:
    """The console on its own fresh SQLite file and the session's Redis."""
    values = {
        "service_name": "console",
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/console.db",
        "redis_url": redis_server.url,
        **overrides,
    }
    return ConsoleSettings(**values)


@pytest.fixture
def settings(tmp_path, redis_server) -> ConsoleSettings:
    return console_settings(tmp_path, redis_server, console_max_spans=50, console_max_spans_per_request=20)


@pytest.fixture
def client(settings):
    """The console app, started (migrated) on ``settings``."""
    with TestClient(create_app(settings)) as client:
        yield client
