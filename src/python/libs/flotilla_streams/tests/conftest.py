import pytest
import sqlalchemy as sa

from flotilla_kit.db import Database
from flotilla_kit.testing.fixtures import database_url, postgres, redis_server
from flotilla_redis.factory import create_redis
from flotilla_streams.schema import create_messaging_tables

effects = sa.Table(
    "effects",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False),  # deliberately not unique: doubles must show
    sa.Column("order_id", sa.String(64), nullable=False),
)


@pytest.fixture
async def client(redis_server):
    client = create_redis(redis_server.url)
    await client.flushall()
    yield client
    await client.aclose()


async def make_database(url: str) -> Database:
    db = Database(url)
    async with db.engine.begin() as connection:
        await connection.run_sync(create_messaging_tables)
        await connection.run_sync(effects.metadata.create_all)
    return db


@pytest.fixture
async def db(database_url):
    """A service database with the outbox and inbox tables, on SQLite and PostgreSQL in turn."""
    database = await make_database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def sqlite_db(tmp_path):
    database = await make_database(f"sqlite+aiosqlite:///{tmp_path}/service.db")
    yield database
    await database.dispose()
