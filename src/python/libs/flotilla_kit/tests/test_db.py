"""The database layer on SQLite and on a real PostgreSQL server."""

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from flotilla_kit.db import Database, DatabaseConfigError, DatabaseUnavailable, normalize_url
from flotilla_kit.migrations import migrate
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.postgres import start_postgres
from flotilla_kit.testing.waiting import eventually

SAMPLE = "flotilla_kit.tests.sample_service.migrations"  # a table of notes (its id, body, author)


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.mark.parametrize(
    "raw, driver",
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg"),
        ("postgres://u:p@h/db", "postgresql+asyncpg"),
    ],
)
def test_plain_urls_get_the_async_driver(raw, driver):
    assert normalize_url(raw).drivername == driver


@pytest.mark.parametrize("raw", ["mysql://h/db", "not a url", "oracle+cx://h"])
def test_unsupported_urls_are_refused_with_the_reason(raw):
    with pytest.raises(DatabaseConfigError):
        normalize_url(raw)


def test_the_password_is_hidden_in_descriptions():
    assert "secret" not in Database("postgresql://app:secret@db.internal/shop").describe()


async def test_ping_answers(db):
    await db.ping()


async def test_a_transaction_commits_on_success_and_rolls_back_on_error(db):
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'kept')"))
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (2, 'dropped')"))
            raise RuntimeError("handler failed")
    async with db.reader() as session:
        assert (await session.execute(sa.text("SELECT id, body FROM notes"))).all() == [(1, "kept")]


async def test_concurrent_writers_all_commit(db):
    """Read-modify-write from many tasks at once: none fails with 'database is locked', none is lost."""
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, '0')"))

    async def increment() -> None:
        async with db.transaction() as session:
            current = int((await session.execute(sa.text("SELECT body FROM notes WHERE id = 1"))).scalar_one())
            await asyncio.sleep(0)
            await session.execute(sa.text("UPDATE notes SET body = :v WHERE id = 1"), {"v": str(current + 1)})

    if not db.is_sqlite:
        pytest.skip("PostgreSQL's READ COMMITTED does not serialize read-modify-write; SQLite's write lock does")
    await asyncio.gather(*(increment() for _ in range(30)))
    async with db.reader() as session:
        assert (await session.execute(sa.text("SELECT body FROM notes WHERE id = 1"))).scalar_one() == "30"


async def test_sqlite_runs_in_wal_mode(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/nested/dir/wal.db")  # missing folders are created
    try:
        async with db.reader() as session:
            assert (await session.execute(sa.text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await session.execute(sa.text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await db.dispose()


async def test_single_statement_reads_see_committed_rows(db):
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'a'), (2, 'b')"))
    assert (await db.fetch_one(sa.text("SELECT body FROM notes WHERE id = 2"))) == ("b",)
    assert await db.fetch_one(sa.text("SELECT body FROM notes WHERE id = 3")) is None
    assert [tuple(r) for r in await db.fetch_all(sa.text("SELECT id FROM notes ORDER BY id"))] == [(1,), (2,)]


async def test_single_statement_reads_do_not_wait_for_an_open_write(db):
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'a')"))
    async with db.transaction() as session:
        await session.execute(sa.text("UPDATE notes SET body = 'changed' WHERE id = 1"))
        # The write lock is held: a read sees the last committed state, at once.
        read = await asyncio.wait_for(db.fetch_one(sa.text("SELECT body FROM notes WHERE id = 1")), timeout=2)
        assert read == ("a",)
    assert await db.fetch_one(sa.text("SELECT body FROM notes WHERE id = 1")) == ("changed",)


async def test_many_concurrent_single_statement_reads(db):
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'a')"))
    reads = await asyncio.gather(*(db.fetch_one(sa.text("SELECT body FROM notes WHERE id = 1")) for _ in range(200)))
    assert reads == [("a",)] * 200


async def test_an_in_memory_sqlite_database_reads_what_it_wrote():
    database = Database("sqlite:///:memory:")
    try:
        async with database.transaction() as session:
            await session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            await session.execute(sa.text("INSERT INTO t VALUES (7)"))
        assert await database.fetch_one(sa.text("SELECT x FROM t")) == (7,)
    finally:
        await database.dispose()


async def test_a_database_that_refuses_connections_is_unavailable_and_a_database_error():
    port = free_port()  # nothing listens there
    db = Database(f"postgresql://app:secret@127.0.0.1:{port}/shop")
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            await db.fetch_one(sa.text("SELECT 1"))
        assert isinstance(raised.value, SQLAlchemyError)  # handled wherever database errors are
        assert isinstance(raised.value.__cause__, ConnectionRefusedError)
    finally:
        await db.dispose()


async def test_a_connection_that_breaks_mid_transaction_is_unavailable():
    server = start_postgres()
    db = Database(server.create_database("broken"))
    try:
        with pytest.raises(DatabaseUnavailable, match="broke"):
            async with db.reader() as session:
                await session.execute(sa.text("SELECT 1"))
                server.stop()  # immediate: the open connection is cut
                await session.execute(sa.text("SELECT 1"))
    finally:
        await db.dispose()
        server.stop()


async def test_other_database_errors_keep_their_type(db):
    with pytest.raises(DBAPIError) as raised:
        await db.fetch_one(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(raised.value, DatabaseUnavailable)


async def test_sqlite_writers_of_one_process_queue_in_order_instead_of_timing_out_in_the_busy_handler(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/queue.db")

    @sa.event.listens_for(db.engine.sync_engine, "connect")
    def short_busy_timeout(dbapi_connection, _record):  # after the kit's own PRAGMAs
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=50")
        cursor.close()

    async with db.transaction() as session:
        await session.execute(sa.text("CREATE TABLE counter (n INTEGER)"))
        await session.execute(sa.text("INSERT INTO counter VALUES (0)"))
        assert (await session.execute(sa.text("PRAGMA busy_timeout"))).scalar() == 50
    others_queued = asyncio.Event()

    async def increment(first: bool) -> None:
        async with db.transaction() as session:
            await session.execute(sa.text("UPDATE counter SET n = n + 1"))  # BEGIN IMMEDIATE: the lock is taken
            if first:
                # Hold the write lock until the five others wait for it: in this process's queue, not in
                # SQLite's busy handler, which would give up after its 50 ms.
                await others_queued.wait()

    try:
        first = asyncio.create_task(increment(True))
        await eventually(lambda: _true(db._write_lock is not None and db._write_lock.locked()), what="first writer in")
        others = [asyncio.create_task(increment(False)) for _ in range(5)]
        await eventually(lambda: _true(_waiting_writers(db) == 5), what="five writers queued")
        others_queued.set()
        await asyncio.gather(first, *others)
        assert await db.fetch_one(sa.text("SELECT n FROM counter")) == (6,)
    finally:
        await db.dispose()


async def test_a_write_transaction_inside_another_on_sqlite_is_refused_instead_of_waiting_for_itself(tmp_path):
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/nested.db")
    try:
        async with db.transaction():
            with pytest.raises(RuntimeError, match="inside another"):
                async with db.transaction():
                    pass
        async with db.transaction():  # the outer one released the lock
            child = asyncio.create_task(_write_once(db))  # another task: it waits its turn
        await child
    finally:
        await db.dispose()


async def _write_once(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(sa.text("SELECT 1"))


async def _true(value: bool) -> bool:
    return value


def _waiting_writers(db: Database) -> int:
    lock = db._write_lock
    return len(lock._waiters or ()) if lock is not None else 0
