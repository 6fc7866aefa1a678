import uuid

import pytest
from litestar.testing import TestClient

from catalog.app import create_app
from catalog.settings import CatalogSettings
from flotilla_kit.testing.fixtures import postgres

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path):
    """The catalog app on its own fresh database, SQLite and PostgreSQL in turn."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    else:
        url = request.getfixturevalue("postgres").create_database(f"catalog_{uuid.uuid4().hex}")
    settings = CatalogSettings(service_name="catalog", database_url=url, max_page_size=50)
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
