"""The catalog's Alembic revisions: they build exactly what the models declare, downgrade cleanly,
and take over databases the former migration runner made."""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from litestar.testing import TestClient

from catalog.app import create_app
from flotilla_kit.db import Database
from flotilla_kit.migrations import FORMER_RUNNER_TABLE, status
from flotilla_kit.testing.migrations import assert_downgrade_round_trips, assert_migrations_match_models

MIGRATIONS = "catalog.migrations"


def test_the_migrations_build_what_the_models_declare(database_url):
    assert_migrations_match_models(MIGRATIONS, database_url)


def test_the_migrations_downgrade_to_base_and_upgrade_again(database_url):
    assert_downgrade_round_trips(MIGRATIONS, database_url)


# The products table as the former runner's 0001_create_products made it.
_former = sa.MetaData()
_former_products = sa.Table(
    "products",
    _former,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("sku", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("price_amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, index=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
_former_applied = sa.Table(
    FORMER_RUNNER_TABLE,
    _former,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


async def test_a_catalog_database_of_the_former_runner_keeps_its_products_and_gets_the_outbox(settings):
    db = Database(settings.database_url)
    product_id, now = uuid.uuid4(), datetime.now(UTC)
    try:
        async with db.transaction() as session:
            await session.run_sync(lambda s: _former.create_all(s.connection()))
            await session.execute(
                _former_products.insert().values(
                    id=product_id, sku="TEA-1", name="Tea", description="", price_amount=450, currency="EUR",
                    active=True, version=1, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            await session.execute(_former_applied.insert().values(version=1, name="create_products", applied_at=now))
        with TestClient(create_app(settings)) as client:
            assert client.get(f"/products/{product_id}").json()["sku"] == "TEA-1"
            assert client.get("/readyz").status_code == 200
            # Revisions 0003 to 0005 computed the search words and key of the product it found, and indexed them.
            assert [p["sku"] for p in client.get("/products", params={"q": "te"}).json()["items"]] == ["TEA-1"]
        at = await status(db, MIGRATIONS)
        assert (at.current, at.pending) == (("0005",), [])
        async with db.reader() as session:
            tables = await session.run_sync(lambda s: sa.inspect(s.connection()).get_table_names())
        assert FORMER_RUNNER_TABLE not in tables and "flotilla_outbox" in tables
    finally:
        await db.dispose()
