import pytest

from flotilla_kit.testing.postgres import start_postgres


@pytest.fixture(scope="session")
def postgres():
    server = start_postgres()
    yield server
    server.stop()
