"""Checks every service runs on its migrations, in its own tests (SQLite and PostgreSQL):

    from flotilla_kit.testing.migrations import assert_downgrade_round_trips, assert_migrations_match_models

    def test_migrations_match_the_models(database_url):
        assert_migrations_match_models("catalog.migrations", database_url)

    def test_migrations_downgrade_to_base_and_back(database_url):
        assert_downgrade_round_trips("catalog.migrations", database_url)

Both take the URL of an empty database (the ``database_url`` fixture gives one) and may be called
from sync or async tests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

import sqlalchemy as sa

from flotilla_kit.db import Database
from flotilla_kit.migrations import alembic_config, downgrade, migrate, status, version_table

_T = TypeVar("_T")


def assert_migrations_match_models(migrations_package: str, database_url: str) -> None:
    """Upgrade an empty database to head, then compare it with the metadata the package's env.py
    declares (Alembic's autogenerate comparison, with compare_type, as ``alembic check`` does);
    fail listing every difference. This is what fails CI when models and migrations disagree."""
    differences = _run(_upgraded_differences(migrations_package, database_url))
    assert not differences, f"{migrations_package} does not match its models; differences:\n" + "\n".join(
        f"  {difference}" for difference in differences
    )


def assert_downgrade_round_trips(migrations_package: str, database_url: str) -> None:
    """Upgrade an empty database to head, downgrade to base, upgrade to head again: each step works,
    and at base nothing is left but the (empty) version table."""
    _run(_round_trip(migrations_package, database_url))


async def _upgraded_differences(package: str, url: str) -> list[Any]:
    db = Database(url)
    try:
        await _assert_empty(db)
        await migrate(db, package)
        async with db.reader() as session:
            connection = await session.connection()
            return await connection.run_sync(_compare, package)
    finally:
        await db.dispose()


def _compare(connection: sa.Connection, package: str) -> list[Any]:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = alembic_config(package, connection)
    script = ScriptDirectory.from_config(config)
    differences: list[Any] = []

    def compare(_heads: Any, context: Any) -> list[Any]:
        # Runs inside env.py's run_migrations: the context is configured exactly as migrations run.
        differences.extend(compare_metadata(context, context.opts["target_metadata"]))
        return []  # nothing to migrate

    with EnvironmentContext(config, script, fn=compare):
        script.run_env()
    return differences


async def _round_trip(package: str, url: str) -> None:
    db = Database(url)
    try:
        await _assert_empty(db)
        applied = await migrate(db, package)
        assert applied, f"{package} has no revisions to apply"
        reverted = await downgrade(db, package, "base")
        assert [r.id for r in reverted] == [r.id for r in reversed(applied)], (applied, reverted)
        left = await _tables(db)
        assert left == [version_table(package)], f"after downgrading {package} to base, tables are left: {left}"
        assert (await status(db, package)).current == (), "the version table still names a revision at base"
        again = await migrate(db, package)
        assert [r.id for r in again] == [r.id for r in applied], (applied, again)
        at = await status(db, package)
        assert at.current == at.heads and not at.pending, at
    finally:
        await db.dispose()


async def _assert_empty(db: Database) -> None:
    tables = await _tables(db)
    assert not tables, f"give an empty database: {db.describe()} has tables {tables}"


async def _tables(db: Database) -> list[str]:
    async with db.reader() as session:
        connection = await session.connection()
        return sorted(await connection.run_sync(lambda c: sa.inspect(c).get_table_names()))


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to its end from a sync test, or from an async one (on a thread of its own:
    the test's loop is running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_a_loop = False
    else:
        in_a_loop = True
    if not in_a_loop:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()
