import tempfile
from pathlib import Path

import pytest
from console.app import create_app
from console.settings import ConsoleSettings
from console.tests.browsing import browser, screenshots  # fixtures of the browser tests
from litestar.testing import TestClient

from flotilla_kit.testing.fixtures import redis, redis_server
from flotilla_kit.testing.tokens import TokenIssuer

# The operators' identity provider: the console verifies their tokens with its public key.
ISSUER = TokenIssuer(Path(tempfile.mkdtemp(prefix="console-jwt-")))
ADMIN = ISSUER.bearer("admin", sub="admin-1")
OPERATOR = ISSUER.bearer("operator", sub="operator-1")  # sees everything, acts on nothing
CUSTOMER = ISSUER.bearer("customer", sub="c-1")  # a shop customer: the same key signed their token
SECRET = "s" * 32


def console_settings(tmp_path, redis_server, **overrides) -> ConsoleSettings:
    """The console on its own fresh SQLite file and the session's Redis, verifying ISSUER's tokens."""
    values = {
        "service_name": "console",
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/console.db",
        "redis_url": redis_server.url,
        "jwt_public_key_file": str(ISSUER.public_key_file),
        "console_secret": SECRET,
        **overrides,
    }
    return ConsoleSettings(**values)


@pytest.fixture
def settings(tmp_path, redis_server) -> ConsoleSettings:
    return console_settings(tmp_path, redis_server, console_max_spans=50, console_max_spans_per_request=20)


@pytest.fixture
def client(settings):
    """The console app, started (migrated) on ``settings``, calling as an operator without a role."""
    with TestClient(create_app(settings)) as client:
        client.headers.update(OPERATOR)
        yield client
