"""Async SQLAlchemy 2.0 database layer: one engine per service, SQLite (WAL) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Row, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.base import Executable

log = logging.getLogger(__name__)

# Plain scheme -> the async driver this layer uses for it.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
_WRITE_OPTION = "flotilla_write"
_SINGLE_STATEMENT_OPTION = "flotilla_single_statement"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used (bad syntax or an unsupported driver)."""


def normalize_url(raw: str) -> URL:
    """Parse a database URL and pick the async driver (``postgresql://`` -> asyncpg)."""
    try:
        url = make_url(raw)
    except ArgumentError:
        raise DatabaseConfigError(f"not a database URL: {raw!r}") from None
    driver = _ASYNC_DRIVERS.get(url.drivername)
    if driver is None:
        supported = "sqlite+aiosqlite://, postgresql+asyncpg://"
        raise DatabaseConfigError(f"unsupported database driver {url.drivername!r} (supported: {supported})")
    return url.set(drivername=driver)


class Database:
    """A service's database: engine, sessions and health check.

    ``transaction()`` is for work that writes: on SQLite it takes the write lock up front
    (BEGIN IMMEDIATE), so concurrent writers queue on the busy timeout instead of failing when a
    read snapshot is upgraded. ``reader()`` is a read-only snapshot that never blocks writers.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = self._sqlite_engine(echo)
        else:
            self.engine = create_async_engine(
                self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        self._single_statement = self.engine.execution_options(**{_SINGLE_STATEMENT_OPTION: True})
        self._writer = async_sessionmaker(
            self.engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    def _sqlite_engine(self, echo: bool) -> AsyncEngine:
        database = self.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(self.url, echo=echo)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control from the driver so that _on_begin decides how BEGIN reads.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",  # durable across process crashes; WAL's recommended level
                "foreign_keys=ON",
                "busy_timeout=5000",
            ):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            options = connection.get_execution_options()
            if options.get(_SINGLE_STATEMENT_OPTION):
                return  # one statement is its own snapshot: BEGIN would only cost a round trip
            connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE_OPTION) else "BEGIN")

        return engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction: committed on normal exit, rolled back on error."""
        async with self._writer.begin() as session:
            yield session

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; its transaction is rolled back at exit."""
        async with self._reader() as session:
            yield session

    async def fetch_one(self, statement: Executable) -> Row[Any] | None:
        """Run one read-only statement and return its first row: the cheapest read there is
        (no session, and on SQLite no BEGIN/COMMIT around it)."""
        async with self._single_statement.connect() as connection:
            return (await connection.execute(statement)).first()

    async def fetch_all(self, statement: Executable) -> Sequence[Row[Any]]:
        """Run one read-only statement and return all rows (see ``fetch_one``)."""
        async with self._single_statement.connect() as connection:
            return (await connection.execute(statement)).all()

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    def describe(self) -> str:
        """The URL without its password, for logs and /info."""
        return self.url.render_as_string(hide_password=True)
