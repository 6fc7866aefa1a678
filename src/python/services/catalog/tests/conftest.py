import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from flotilla_kit.testing.fixtures import database_url, postgres, redis_server

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}


@pytest.fixture
def settings(database_url, redis_server) -> CatalogSettings:
    """The catalog on its own fresh database (SQLite and PostgreSQL in turn) and the session's Redis."""
    return CatalogSettings(
        service_name="catalog", database_url=database_url, redis_url=redis_server.url, max_page_size=50
    )


@pytest.fixture
def client(settings):
    """The catalog app, started (migrated, publishing) on ``settings``."""
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def create(client):
    def create(sku: str, name: str = "Green tea", amount: int = 450, currency: str = "EUR", **extra):
        body = {"sku": sku, "name": name, "price": {"amount": amount, "currency": currency}, **extra}
        response = client.post("/products", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

    return create
