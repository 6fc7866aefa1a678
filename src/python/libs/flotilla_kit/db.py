"""Async SQLAlchemy 2.0 database layer: one engine per service, SQLite (WAL) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Row, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
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
# How long a SQLite writer waits for the write lock, in this process's queue or in SQLite's busy handler.
_BUSY_TIMEOUT_SECONDS = 5.0
_SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=NORMAL",  # durable across process crashes; WAL's recommended level
    "foreign_keys=ON",
    f"busy_timeout={int(_BUSY_TIMEOUT_SECONDS * 1000)}",
)
# Threads (and pooled connections) for single-statement reads of a SQLite file.
_SQLITE_READ_THREADS = 4


_T = TypeVar("_T")

# The Database whose SQLite write lock is held, and the task holding it (see Database.transaction).
_holding_write_lock: ContextVar[tuple[Database, asyncio.Task[Any] | None] | None] = ContextVar(
    "flotilla_holding_write_lock", default=None
)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the driver, so that BEGIN is sent only where this layer says
    # (_on_begin), and set what every connection to the file needs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


class DatabaseUnavailable(SQLAlchemyError):
    """The database cannot be reached: connecting failed (refused, timed out, no such host) or an
    open connection broke. Transient: the same work may succeed later.

    Raised by the database layer in place of the driver's error (its ``__cause__``), so that only
    errors known to come from the database are taken for its absence; a SQLAlchemyError, so code
    that handles database errors handles it too.
    """


def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
    # The "do_connect" hook of this layer's engines. A driver that cannot connect raises OSError
    # (ConnectionRefusedError, a timeout, a name that does not resolve), which SQLAlchemy passes on
    # as it is: not a database error to its eyes, and nothing to tell it from any other OSError.
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {type(exc).__name__}: {exc}") from exc


def _unavailable(context: ExceptionContext) -> BaseException | None:
    # The "handle_error" hook: an error on an open connection that SQLAlchemy takes for a
    # disconnect (and invalidates the connection for), or an OSError out of the driver itself.
    if context.is_pre_ping:
        return None  # the pool's own check before handing a connection out: it reconnects by itself
    error = context.original_exception
    if context.is_disconnect or isinstance(error, OSError):
        return _ConnectionBroke(f"the connection to the database broke: {type(error).__name__}: {error}")
    return None


def _report_unavailability(engine: Engine) -> None:
    event.listen(engine, "do_connect", _connect)
    event.listen(engine, "handle_error", _unavailable)


class _ConnectionBroke(DatabaseUnavailable):
    """An open connection broke under a statement (not: no connection could be made)."""


def _refuse_closed_connection(
    _dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    # The "checkout" hook of the PostgreSQL pool, in place of a ping (three round trips with asyncpg:
    # BEGIN, ";", ROLLBACK, on every checkout). A connection whose server went away (a restart,
    # pg_terminate_backend) is usually closed already: asyncpg saw the socket close while the
    # connection sat in the pool. The pool then connects anew, at no cost to a healthy connection;
    # the rest (a close not seen yet) is left to the retry of single-statement reads, and to the
    # pool's invalidation of all its connections after the first one that breaks.
    driver = record.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


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

    Any of them raises DatabaseUnavailable when the database cannot be reached, and
    ``sqlalchemy.exc.TimeoutError`` when no pooled connection is free in time.

    ``fetch_one``/``fetch_all`` on PostgreSQL are one round trip each: the statement alone, in
    autocommit (no BEGIN and ROLLBACK around it), on a pooled connection that is not pinged first
    (a closed one is replaced at checkout, at no cost). A read whose connection breaks under it
    (a restart, a killed backend) is run once more, on a new connection: it is only a read. (They
    are for reads: a write sent through them would be committed, not rolled back.)

    ``fetch_one``/``fetch_all`` on a SQLite file run the whole statement in one trip to a read
    thread (pysqlite, through a small sync engine of their own): aiosqlite makes five trips to its
    thread for one statement (cursor, execute, fetch, close, rollback), and each is a thread
    wake-up both ways, which costs more than the query itself.
    """

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = self._sqlite_engine(echo)
        else:
            # No pool_pre_ping: see _refuse_closed_connection.
            self.engine = create_async_engine(self.url, echo=echo, pool_size=pool_size, max_overflow=pool_size)
            event.listen(self.engine.sync_engine, "checkout", _refuse_closed_connection)
        self._sync_reads: Engine | None = None
        self._read_threads: ThreadPoolExecutor | None = None
        if self.is_sqlite and self._is_file():
            self._sync_reads = self._sqlite_read_engine(echo)
            self._read_threads = ThreadPoolExecutor(_SQLITE_READ_THREADS, thread_name_prefix="sqlite-read")
        for engine in (self.engine.sync_engine, self._sync_reads):
            if engine is not None:
                _report_unavailability(engine)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._reader = async_sessionmaker(self.engine, expire_on_commit=False)
        # One statement is its own snapshot. On SQLite, _on_begin sends no BEGIN for it; on PostgreSQL,
        # autocommit makes asyncpg send none (nor the ROLLBACK at the connection's return to the pool).
        single: dict[str, Any] = {_SINGLE_STATEMENT_OPTION: True}
        if not self.is_sqlite:
            single["isolation_level"] = "AUTOCOMMIT"
        self._single_statement = self.engine.execution_options(**single)
        self._writer = async_sessionmaker(
            self.engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    def _sqlite_engine(self, echo: bool) -> AsyncEngine:
        if self._is_file():
            Path(str(self.url.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(self.url, echo=echo)

        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            options = connection.get_execution_options()
            if options.get(_SINGLE_STATEMENT_OPTION):
                return  # one statement is its own snapshot: BEGIN would only cost a round trip
            connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get(_WRITE_OPTION) else "BEGIN")

        return engine

    def _is_file(self) -> bool:
        """Whether the SQLite database is a plain file (not in memory, not a URI)."""
        database = self.url.database or ""
        return bool(database) and database != ":memory:" and not database.startswith("file:")

    def _sqlite_read_engine(self, echo: bool) -> Engine:
        engine = create_engine(
            self.url.set(drivername="sqlite+pysqlite"),
            echo=echo,
            pool_size=_SQLITE_READ_THREADS,
            max_overflow=0,
            connect_args={"check_same_thread": False},  # a pooled connection serves any read thread
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        return engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction: committed on normal exit, rolled back on error.

        On SQLite the writers of this process queue for the file's one write lock here, in order,
        rather than in SQLite's busy handler, which sleeps between retries (1, 2, 5 ... 100 ms) and
        so adds milliseconds to every contended commit (the busy timeout still orders writers of
        different processes). A task that opens a transaction inside its own raises RuntimeError;
        a writer that waits longer than the busy timeout raises DatabaseUnavailable, as SQLite's
        "database is locked" would.
        """
        if self._write_lock is None:
            async with self._writer.begin() as session:
                yield session
            return
        task = asyncio.current_task()
        if _holding_write_lock.get() == (self, task):
            raise RuntimeError("a write transaction inside another one on SQLite would wait for itself")
        try:
            async with asyncio.timeout(_BUSY_TIMEOUT_SECONDS):
                await self._write_lock.acquire()
        except TimeoutError:
            raise DatabaseUnavailable(
                f"no write lock within {_BUSY_TIMEOUT_SECONDS:g}s: the database is busy"
            ) from None
        token = _holding_write_lock.set((self, task))
        try:
            async with self._writer.begin() as session:
                yield session
        finally:
            _holding_write_lock.reset(token)
            self._write_lock.release()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[AsyncSession]:
        """A session for reads; its transaction is rolled back at exit."""
        async with self._reader() as session:
            yield session

    async def fetch_one(self, statement: Executable) -> Row[Any] | None:
        """Run one read-only statement and return its first row: the cheapest read there is
        (no session, and no BEGIN/ROLLBACK around it: on PostgreSQL one round trip)."""
        if self._sync_reads is not None:
            return await self._in_read_thread(lambda connection: connection.execute(statement).first())
        return await self._single_read(lambda connection: _first(connection, statement))

    async def fetch_all(self, statement: Executable) -> Sequence[Row[Any]]:
        """Run one read-only statement and return all rows (see ``fetch_one``)."""
        if self._sync_reads is not None:
            return await self._in_read_thread(lambda connection: connection.execute(statement).all())
        return await self._single_read(lambda connection: _all(connection, statement))

    async def _single_read(self, read: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
        try:
            async with self._single_statement.connect() as connection:
                return await read(connection)
        except _ConnectionBroke:
            # The pool has dropped every connection older than this failure (SQLAlchemy invalidates
            # the whole pool on a disconnect): the second try connects anew, and fails with
            # DatabaseUnavailable if the server is not back yet.
            log.info("a pooled connection broke under a read; reading once more on a new connection")
            async with self._single_statement.connect() as connection:
                return await read(connection)

    async def _in_read_thread(self, read: Callable[[Connection], _T]) -> _T:
        engine, threads = self._sync_reads, self._read_threads
        assert engine is not None and threads is not None

        def run() -> _T:
            with engine.connect() as connection:
                return read(connection)

        # In the caller's context: the statement's span (flotilla_kit.tracing) needs the current one.
        return await asyncio.get_running_loop().run_in_executor(threads, contextvars.copy_context().run, run)

    def sync_engines(self) -> list[Engine]:
        """The engines statements run on (for event listeners): the main one, and SQLite's read engine."""
        return [engine for engine in (self.engine.sync_engine, self._sync_reads) if engine is not None]

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query (one round trip on PostgreSQL)."""
        await self._single_read(lambda connection: _first(connection, text("SELECT 1")))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self._read_threads is not None and self._sync_reads is not None:
            self._read_threads.shutdown(wait=False)
            self._sync_reads.dispose()

    def describe(self) -> str:
        """The URL without its password, for logs and /info."""
        return self.url.render_as_string(hide_password=True)


async def _first(connection: AsyncConnection, statement: Executable) -> Row[Any] | None:
    return (await connection.execute(statement)).first()


async def _all(connection: AsyncConnection, statement: Executable) -> Sequence[Row[Any]]:
    return (await connection.execute(statement)).all()


def insert_unless_conflicting(session: AsyncSession, table: Table, *, on: Sequence[str]) -> Any:
    """An INSERT into ``table`` that skips rows whose ``on`` columns (a unique key) exist already.

    ON CONFLICT DO NOTHING in the session's dialect (SQLite or PostgreSQL). On PostgreSQL a row that
    a concurrent transaction is inserting makes this wait for it and then skip, where a plain INSERT
    would fail the whole transaction. Add ``.returning(...)`` to learn which rows went in.
    """
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    return dialect.insert(table).on_conflict_do_nothing(index_elements=list(on))
