"""The database layer's PostgreSQL connections: what a read costs on the wire, and what becomes of the
pool when the server kills its backends or restarts (a real server; the wire read by a relay)."""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from flotilla_kit.db import Database, DatabaseUnavailable
from flotilla_kit.testing.postgres import PostgresServer, start_postgres
from flotilla_kit.testing.waiting import eventually

_READ = sa.text("SELECT body FROM notes WHERE id = :id").bindparams(id=1)
# Waits (in the server) for the test's advisory lock 7, then reads: a statement the test can catch in
# flight. Transaction-scoped, so it is let go when the statement ends, even in autocommit. (Advisory
# locks are per database: the test takes it on a connection to the same one.)
_READ_BEHIND_LOCK = sa.text("SELECT body, pg_advisory_xact_lock_shared(7) FROM notes WHERE id = 1")

# Startup-phase requests that are not the startup message (the client sends that after them).
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


class WireCounter:
    """A TCP relay in front of PostgreSQL that reads the messages clients send (protocol v3).

    A simple Query ('Q') or a Sync ('S', the end of an extended-protocol batch) each make the client
    wait for the server's ReadyForQuery: one round trip each.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.messages: list[tuple[str, bytes]] = []  # (type, body) of every message after startup
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def round_trips(self) -> int:
        return sum(1 for kind, _ in self.messages if kind in ("Q", "S"))

    def simple_queries(self) -> list[str]:
        return [body.rstrip(b"\0").decode() for kind, body in self.messages if kind == "Q"]

    async def __aenter__(self) -> WireCounter:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for pump in (
            self._pump(client_reader, server_writer, _FrontendParser(self.messages)),
            self._pump(server_reader, client_writer, None),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parser: _FrontendParser | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if parser is not None:
                    parser.feed(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class _FrontendParser:
    """Splits the bytes a client sends into messages, and records each as it completes."""

    def __init__(self, messages: list[tuple[str, bytes]]) -> None:
        self.messages = messages
        self.buffer = b""
        self.started = False  # past the startup message: every message has a type byte

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if not self.started:  # length-prefixed, no type byte: SSLRequest, GSSENCRequest, StartupMessage
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!II", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                self.buffer = self.buffer[length:]
                self.started = code not in (_SSL_REQUEST, _GSSENC_REQUEST)
            else:
                if len(self.buffer) < 5:
                    return
                (length,) = struct.unpack("!I", self.buffer[1:5])
                if len(self.buffer) < 1 + length:
                    return
                self.messages.append((chr(self.buffer[0]), self.buffer[5 : 1 + length]))
                self.buffer = self.buffer[1 + length :]


def _via(url: str, port: int) -> str:
    return make_url(url).set(port=port).render_as_string(hide_password=False)


async def _notes(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        await session.execute(sa.text("INSERT INTO notes VALUES (1, 'a')"))


@pytest.fixture
async def counted(postgres: PostgresServer) -> AsyncIterator[tuple[Database, WireCounter]]:
    """A database reached through a WireCounter, with one pooled connection (so statements, once
    prepared on it, stay prepared), and a table of notes."""
    url = postgres.create_database(f"t_{uuid.uuid4().hex}")
    async with WireCounter(postgres.port) as wire:
        db = Database(_via(url, wire.port), pool_size=1)
        try:
            await _notes(db)
            yield db, wire
        finally:
            await db.dispose()


async def test_a_single_statement_read_is_one_round_trip_with_no_begin_ping_or_rollback(counted):
    db, wire = counted
    assert await db.fetch_one(_READ) == ("a",)  # the first time, asyncpg prepares it: one more trip
    assert await db.fetch_all(_READ) == [("a",)]
    wire.messages.clear()
    for _ in range(10):
        assert await db.fetch_one(_READ) == ("a",)
        assert await db.fetch_all(_READ) == [("a",)]
    assert wire.round_trips() == 20, wire.messages
    assert wire.simple_queries() == []  # no BEGIN, no ROLLBACK, no ping (";")


async def test_a_ping_is_one_round_trip(counted):
    db, wire = counted
    await db.ping()
    wire.messages.clear()
    await db.ping()
    assert wire.round_trips() == 1, wire.messages


async def test_a_read_session_and_a_write_transaction_are_not_pinged_at_checkout(counted):
    db, wire = counted
    async with db.reader() as session:
        await session.execute(_READ)
    wire.messages.clear()
    async with db.reader() as session:
        assert (await session.execute(_READ)).one() == ("a",)
    assert wire.simple_queries() == ["BEGIN;", "ROLLBACK;"] and wire.round_trips() == 3, wire.messages
    wire.messages.clear()
    async with db.transaction() as session:
        await session.execute(sa.text("UPDATE notes SET body = 'b' WHERE id = 1"))
    assert wire.simple_queries() == ["BEGIN;", "COMMIT;"], wire.messages


async def test_a_read_sees_what_was_committed_just_before_it(counted):
    db, _wire = counted
    for body in ("b", "c"):
        async with db.transaction() as session:
            await session.execute(sa.text("UPDATE notes SET body = :body WHERE id = 1"), {"body": body})
        assert await db.fetch_one(_READ) == (body,)


async def _backends(admin: asyncpg.Connection, database: str, *, waiting: bool = False) -> list[int]:
    sql = "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
    if waiting:
        sql += " AND wait_event_type = 'Lock'"
    return [row["pid"] for row in await admin.fetch(sql, database)]


async def _terminate(admin: asyncpg.Connection, pids: list[int], database: str) -> None:
    await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)

    async def gone() -> bool:
        return not set(pids) & set(await _backends(admin, database))

    await eventually(gone, what="killed backends gone")


@pytest.fixture
async def killable(postgres: PostgresServer) -> AsyncIterator[tuple[Database, asyncpg.Connection, str]]:
    """A database with a table of notes, and an administrator's connection to it that can kill its backends."""
    name = f"t_{uuid.uuid4().hex}"
    db = Database(postgres.create_database(name), pool_size=4)
    admin = await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres", database=name)
    try:
        await _notes(db)
        yield db, admin, name
    finally:
        await admin.close()
        await db.dispose()


async def _fill_the_pool(db: Database, admin: asyncpg.Connection, name: str) -> list[int]:
    assert await asyncio.gather(*(db.fetch_one(_READ) for _ in range(4))) == [("a",)] * 4  # four at once
    pooled = await _backends(admin, name)
    assert len(pooled) == 4
    return pooled


async def test_reads_all_succeed_after_every_pooled_backend_was_killed(killable):
    db, admin, name = killable
    await _terminate(admin, await _fill_the_pool(db, admin, name), name)
    for _ in range(10):
        assert await db.fetch_one(_READ) == ("a",)


async def test_after_every_pooled_backend_was_killed_at_most_the_first_transaction_fails_and_only_as_unavailable(
    killable,
):
    db, admin, name = killable
    await _terminate(admin, await _fill_the_pool(db, admin, name), name)
    # Transactions first: unlike a read, one is not tried again. The pool has usually seen its
    # connections close while they sat in it and hands out new ones; a close it has not seen yet (the
    # server's backend is gone from pg_stat_activity a moment before its socket closes) fails the
    # one request that meets it, and SQLAlchemy then drops every older connection of the pool.
    failures = await _transactions_and_reads(db, 10)
    assert len(failures) <= 1 and all(isinstance(failure, DatabaseUnavailable) for failure in failures), failures
    assert await db.fetch_one(sa.text("SELECT count(*) FROM notes WHERE body = 'x'")) == (10 - len(failures),)


async def _transactions_and_reads(db: Database, count: int) -> list[BaseException]:
    """Run ``count`` times a transaction (adding a note 'x') and a read; return what failed."""
    failures: list[BaseException] = []
    for attempt in range(count):
        try:
            async with db.transaction() as session:
                await session.execute(sa.text("INSERT INTO notes VALUES (:id, 'x')"), {"id": 10 + attempt})
            assert await db.fetch_one(_READ) == ("a",)
        except Exception as exc:  # counted and checked by the caller
            failures.append(exc)
    return failures


async def test_a_read_whose_backend_is_killed_under_it_is_read_again_on_a_new_connection(killable):
    db, admin, name = killable
    await admin.execute("SELECT pg_advisory_lock(7)")
    read = asyncio.create_task(db.fetch_one(_READ_BEHIND_LOCK))

    async def read_waits() -> bool:
        return len(await _backends(admin, name, waiting=True)) == 1

    await eventually(read_waits, what="the read waiting for the lock")
    await _terminate(admin, await _backends(admin, name, waiting=True), name)
    await admin.execute("SELECT pg_advisory_unlock(7)")
    assert (await asyncio.wait_for(read, timeout=20))[0] == "a"
    assert await db.fetch_one(_READ) == ("a",)


async def test_a_transaction_whose_backend_is_killed_under_it_is_unavailable_and_the_next_one_commits(killable):
    db, admin, name = killable
    await admin.execute("SELECT pg_advisory_lock(7)")

    async def write() -> None:
        async with db.transaction() as session:
            await session.execute(sa.text("SELECT pg_advisory_xact_lock_shared(7)"))
            await session.execute(sa.text("INSERT INTO notes VALUES (2, 'lost')"))

    writing = asyncio.create_task(write())

    async def write_waits() -> bool:
        return len(await _backends(admin, name, waiting=True)) == 1

    await eventually(write_waits, what="the transaction waiting for the lock")
    await _terminate(admin, await _backends(admin, name, waiting=True), name)
    await admin.execute("SELECT pg_advisory_unlock(7)")
    with pytest.raises(DatabaseUnavailable):  # the service answers 503 (flotilla_kit.app)
        await asyncio.wait_for(writing, timeout=20)
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes VALUES (2, 'kept')"))
    assert await db.fetch_all(sa.text("SELECT body FROM notes ORDER BY id")) == [("a",), ("kept",)]


async def test_after_a_server_restart_at_most_the_first_request_fails_and_only_as_unavailable():
    server = start_postgres()  # a server of its own: it is stopped and started again
    db = Database(server.create_database("restarted"), pool_size=4)
    try:
        await _notes(db)
        assert await asyncio.gather(*(db.fetch_one(_READ) for _ in range(4))) == [("a",)] * 4
        # Fast: the pooled connections are cut, and what was committed is kept (this throwaway server
        # runs without fsync, so an immediate stop could lose the table).
        server.stop(mode="fast", remove=False)
        # While it is down, every request fails at once as unavailable (a 503), never otherwise.
        for _ in range(3):
            with pytest.raises(DatabaseUnavailable):
                await db.fetch_one(_READ)
            with pytest.raises(DatabaseUnavailable):
                async with db.transaction() as session:
                    await session.execute(sa.text("SELECT 1"))
        # pg_ctl restart starts it with the options of its last start (postmaster.opts).
        log = str(server.directory / "server.log")
        server._run("pg_ctl", "-D", str(server.data), "-l", log, "-w", "-t", "60", "restart")
        # Back: the event loop has not run since (so no closed socket was noticed), and the pool still
        # holds connections from before the stop. A transaction first (it cannot be retried).
        failures = await _transactions_and_reads(db, 10)
        assert len(failures) <= 1 and all(isinstance(failure, DatabaseUnavailable) for failure in failures), failures
        assert await db.fetch_one(sa.text("SELECT count(*) FROM notes WHERE body = 'x'")) == (10 - len(failures),)
    finally:
        await db.dispose()
        server.stop()
