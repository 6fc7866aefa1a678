"""Migrations on Alembic through the kit's Database, on SQLite and on a real PostgreSQL server."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from flotilla_kit.db import Database
from flotilla_kit.migrations import (
    FORMER_RUNNER_TABLE,
    MigrationError,
    MigrationStatus,
    UnknownRevision,
    downgrade,
    migrate,
    script_location,
    status,
    version_table,
)
from flotilla_kit.testing.migrations import assert_downgrade_round_trips, assert_migrations_match_models
from flotilla_kit.testing.waiting import eventually_sync

SAMPLE = "flotilla_kit.tests.sample_service.migrations"
DRIFTED = "flotilla_kit.tests.sample_drifted.migrations"
SAMPLE_VERSIONS = Path(__file__).parent / "sample_service" / "migrations" / "versions"


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    yield database
    await database.dispose()


async def _tables(db: Database) -> list[str]:
    async with db.reader() as session:
        return sorted(await session.run_sync(lambda s: sa.inspect(s.connection()).get_table_names()))


def _ids(revisions) -> list[str]:
    return [r.id for r in revisions]


@pytest.fixture
def make_package(tmp_path, monkeypatch):
    """Writes a migrations package on sys.path: the sample's env.py and revisions, plus ``extra``
    revision files; returns its name (unique, so no test sees another's modules)."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(extra: dict[str, str], *, sample_revisions: bool = True) -> str:
        name = f"svc_{uuid.uuid4().hex[:8]}"
        versions = tmp_path / name / "migrations" / "versions"
        versions.mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("")
        (tmp_path / name / "migrations" / "__init__.py").write_text("")
        (tmp_path / name / "migrations" / "env.py").write_text(
            "from flotilla_kit.migrations import run_env\n"
            "from flotilla_kit.tests.sample_service.models import Base\n\n"
            "run_env(Base.metadata)\n"
        )
        if sample_revisions:
            for revision in SAMPLE_VERSIONS.glob("0*.py"):
                (versions / revision.name).write_text(revision.read_text())
        for file_name, source in extra.items():
            (versions / file_name).write_text(textwrap.dedent(source))
        return f"{name}.migrations"

    return make


BROKEN_0003 = """
    import sqlalchemy as sa
    from alembic import op

    revision = "0003"
    down_revision = "0002"


    def upgrade() -> None:
        op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
        raise ValueError("bad data")


    def downgrade() -> None:
        op.drop_table("half_done")
"""


async def test_migrate_applies_each_revision_once_in_order(db):
    assert _ids((await status(db, SAMPLE)).pending) == ["0001", "0002"]
    applied = await migrate(db, SAMPLE)
    assert [(r.id, r.name) for r in applied] == [("0001", "0001_create_notes"), ("0002", "0002_add_note_author")]
    assert await migrate(db, SAMPLE) == []
    assert await status(db, SAMPLE) == MigrationStatus(current=("0002",), heads=("0002",), pending=[])
    async with db.transaction() as session:
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'x')"))
        assert (await session.execute(sa.text("SELECT author FROM notes"))).scalar_one() == "anonymous"


async def test_the_revision_is_recorded_in_the_services_own_version_table(db):
    await migrate(db, SAMPLE)
    assert version_table(SAMPLE) == "flotilla_kit_alembic_version"
    assert version_table("catalog.migrations") == "catalog_alembic_version"
    assert await _tables(db) == ["flotilla_kit_alembic_version", "notes"]
    assert await db.fetch_all(sa.text("SELECT version_num FROM flotilla_kit_alembic_version")) == [("0002",)]


async def test_concurrent_migrators_on_separate_engines_apply_each_revision_once(database_url):
    databases = [Database(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(database, SAMPLE) for database in databases))
    finally:
        for database in databases:
            await database.dispose()
    assert sorted(r.id for applied in results for r in applied) == ["0001", "0002"]


_MIGRATOR = """
import asyncio, json, pathlib, sys
from flotilla_kit.db import Database
from flotilla_kit.migrations import migrate

async def main(url, package, ready, go):
    db = Database(url)
    await db.ping()  # connected: the race starts on the go signal
    pathlib.Path(ready).touch()
    while not pathlib.Path(go).exists():
        await asyncio.sleep(0.005)
    try:
        print(json.dumps([r.id for r in await migrate(db, package)]))
    finally:
        await db.dispose()

asyncio.run(main(*sys.argv[1:]))
"""


def test_two_processes_starting_at_once_apply_each_revision_once(database_url, tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATOR, database_url, SAMPLE, str(tmp_path / f"ready-{i}"), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        eventually_sync(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(2)), what="both connected")
        go.touch()
        outputs = [process.communicate(timeout=60) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [0, 0], outputs
    applied = [revision for out, _ in outputs for revision in json.loads(out)]
    assert sorted(applied) == ["0001", "0002"]


async def test_a_failing_revision_rolls_back_the_run_and_is_named(db, make_package):
    package = make_package({})
    await migrate(db, package)
    (script_location(package) / "versions" / "0003_broken.py").write_text(textwrap.dedent(BROKEN_0003))
    with pytest.raises(MigrationError, match=r"revision 0003_broken failed .*ValueError: bad data"):
        await migrate(db, package)
    assert (await status(db, package)).current == ("0002",)
    assert "half_done" not in await _tables(db)


async def test_a_failing_downgrade_rolls_back_and_names_the_revision(db, make_package):
    irreversible = """
        import sqlalchemy as sa
        from alembic import op

        revision = "0003"
        down_revision = "0002"


        def upgrade() -> None:
            op.create_table("ledger", sa.Column("id", sa.Integer, primary_key=True))


        def downgrade() -> None:
            raise NotImplementedError("the ledger is kept")
    """
    package = make_package({"0003_add_ledger.py": irreversible})
    await migrate(db, package)
    with pytest.raises(MigrationError, match=r"revision 0003_add_ledger failed \(downgrade rolled back\)"):
        await downgrade(db, package, "base")
    assert (await status(db, package)).current == ("0003",)
    assert "ledger" in await _tables(db)


async def test_a_failing_run_keeps_none_of_its_revisions(db, make_package):
    package = make_package({"0003_broken.py": BROKEN_0003})
    with pytest.raises(MigrationError, match="0003_broken"):
        await migrate(db, package)
    assert await _tables(db) in ([], [version_table(package)])
    assert (await status(db, package)).current == ()


async def test_downgrade_reverts_to_a_revision_relative_or_to_base(db):
    await migrate(db, SAMPLE)
    assert _ids(await downgrade(db, SAMPLE, "-1")) == ["0002"]
    assert (await status(db, SAMPLE)).current == ("0001",)
    assert _ids(await migrate(db, SAMPLE)) == ["0002"]
    assert _ids(await downgrade(db, SAMPLE, "base")) == ["0002", "0001"]
    assert await _tables(db) == [version_table(SAMPLE)]


@pytest.mark.parametrize("revision", ["nope", "-3", "0009"])
async def test_a_revision_that_cannot_be_reached_is_refused_and_changes_nothing(db, revision):
    await migrate(db, SAMPLE)
    with pytest.raises(UnknownRevision):
        await downgrade(db, SAMPLE, revision)
    assert (await status(db, SAMPLE)).current == ("0002",)


async def test_a_database_at_a_revision_the_package_lacks_is_refused(db):
    await migrate(db, SAMPLE)
    async with db.transaction() as session:
        await session.execute(sa.text("UPDATE flotilla_kit_alembic_version SET version_num = '0042'"))
    with pytest.raises(UnknownRevision, match="0042"):
        await migrate(db, SAMPLE)


async def _make_former_runner_database(db: Database, versions: list[int]) -> None:
    """A database as the former runner left it: its migrations' tables and its version table."""
    async with db.transaction() as session:
        await session.execute(sa.text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        await session.execute(sa.text("INSERT INTO notes (id, body) VALUES (1, 'from before')"))
        await session.execute(
            sa.text(
                f"CREATE TABLE {FORMER_RUNNER_TABLE}"
                " (version INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
        )
        for version in versions:
            await session.execute(
                sa.text(f"INSERT INTO {FORMER_RUNNER_TABLE} VALUES (:v, 'm', CURRENT_TIMESTAMP)"), {"v": version}
            )


async def test_a_database_of_the_former_runner_is_adopted_at_its_last_version(db):
    await _make_former_runner_database(db, [1])
    before = await status(db, SAMPLE)
    assert (before.current, before.adopting, _ids(before.pending)) == (("0001",), "0001", ["0002"])
    assert _ids(await migrate(db, SAMPLE)) == ["0002"]  # 0001 was applied by the former runner
    assert await _tables(db) == ["flotilla_kit_alembic_version", "notes"]  # its table is gone
    assert await db.fetch_all(sa.text("SELECT body, author FROM notes")) == [("from before", "anonymous")]
    assert await migrate(db, SAMPLE) == []


async def test_a_former_runner_database_with_a_gap_in_its_versions_is_refused(db):
    await _make_former_runner_database(db, [1, 3])
    with pytest.raises(MigrationError, match=r"versions \[1, 3\] are not 1..N"):
        await migrate(db, SAMPLE)
    assert FORMER_RUNNER_TABLE in await _tables(db)


def test_a_database_at_head_is_migrated_without_importing_alembic(tmp_path):
    """What keeps a restart fast: Alembic (~0.15 s of imports) is loaded only when there is work."""
    url = f"sqlite+aiosqlite:///{tmp_path}/notes.db"
    script = (
        "import asyncio, sys\n"
        "from flotilla_kit.db import Database\n"
        "from flotilla_kit.migrations import migrate\n"
        "async def main():\n"
        f"    db = Database({url!r})\n"
        f"    applied = await migrate(db, {SAMPLE!r})\n"
        "    await db.dispose()\n"
        "    print(len(applied), 'alembic' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    def run() -> str:
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert run() == "2 True"
    assert run() == "0 False"


def test_the_models_check_passes_when_migrations_match_the_models(database_url):
    assert_migrations_match_models(SAMPLE, database_url)


def test_the_models_check_fails_listing_each_difference(database_url):
    with pytest.raises(AssertionError) as failed:
        assert_migrations_match_models(DRIFTED, database_url)
    message = str(failed.value)
    assert "does not match its models" in message
    assert "'add_column', None, 'items', Column('price'" in message
    assert "'modify_type', None, 'items', 'name'" in message


async def test_the_models_check_works_from_an_async_test(database_url):
    assert_migrations_match_models(SAMPLE, database_url)


def test_the_round_trip_check_passes_for_revisions_that_downgrade_cleanly(database_url):
    assert_downgrade_round_trips(SAMPLE, database_url)


def test_the_round_trip_check_fails_when_a_downgrade_leaves_a_table(database_url, make_package):
    leaves_a_table = """
        import sqlalchemy as sa
        from alembic import op

        revision = "0003"
        down_revision = "0002"


        def upgrade() -> None:
            op.create_table("leftover", sa.Column("id", sa.Integer, primary_key=True))


        def downgrade() -> None:
            pass
    """
    package = make_package({"0003_leftover.py": leaves_a_table})
    with pytest.raises(AssertionError, match="leftover"):
        assert_downgrade_round_trips(package, database_url)


def test_the_checks_want_an_empty_database(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/used.db"
    assert_downgrade_round_trips(SAMPLE, url)
    with pytest.raises(AssertionError, match="give an empty database"):
        assert_migrations_match_models(SAMPLE, url)


async def test_a_package_without_env_py_is_refused_clearly(db):
    with pytest.raises(MigrationError, match="not a package with an env.py"):
        await migrate(db, "flotilla_kit.tests.sample_service")
