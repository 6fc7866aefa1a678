"""Each service's schema migrations, on Alembic, run through the service's own Database.

A service keeps an Alembic script directory as a package inside its own (no alembic.ini: the
configuration is built here, with the package's directory found through importlib, so it works
from source and from a PEX in venv mode)::

    <svc>/migrations/__init__.py           empty
    <svc>/migrations/env.py                from flotilla_kit.migrations import run_env
                                           from <svc>.models import Base
                                           run_env(Base.metadata)  # + flotilla_streams.schema.metadata
    <svc>/migrations/versions/0001_<what>.py   plain Alembic revisions: revision = "0001",
                                           down_revision = None, upgrade()/downgrade() with alembic.op

and names the package (``"<svc>.migrations"``) to ``create_service_app`` and ``ServiceDefinition``.
Each service records its revision in its own table, ``<svc>_alembic_version`` (``version_table``),
so services could share a database without clashing.

``migrate`` upgrades to head inside one ``Database.transaction()`` (all or nothing), under a lock
(SQLite's BEGIN IMMEDIATE; on PostgreSQL an advisory transaction lock keyed by the package), so
instances starting at once apply each revision once. A database already at head is recognised
without importing Alembic at all (one SELECT, and the revision ids read from the files' text),
which keeps a restart fast. A database made by the former runner (``flotilla_schema_migrations``
holding versions 1..N) is adopted: stamped at revision ``f"{N:04d}"``, its old table dropped.
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from flotilla_kit.db import Database

if TYPE_CHECKING:  # Alembic is imported only when there is something to migrate (start-up time)
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# The table of the runner Alembic replaced; a database that has it is adopted (see module docstring).
FORMER_RUNNER_TABLE = "flotilla_schema_migrations"
_REVISION_FILE = re.compile(r"^(?!__init__)[^.].*\.py$")  # what Alembic loads from a versions folder


class MigrationError(RuntimeError):
    """A migration failed (its transaction rolled back; the message names the revision), or the
    migrations package cannot be used."""


class UnknownRevision(MigrationError):
    """A revision to migrate to, or the one the database is at, is not in the migrations package."""


@dataclass(frozen=True)
class Revision:
    """A revision of a migrations package: its id (``"0002"``) and its file name without ``.py``."""

    id: str
    name: str


@dataclass(frozen=True)
class MigrationStatus:
    current: tuple[str, ...]  # revision ids the database is at; () = base (nothing applied)
    heads: tuple[str, ...]  # the package's head revision ids
    pending: list[Revision] = field(default_factory=list)  # what ``migrate`` would apply, in order
    adopting: str | None = None  # the revision a former-runner database will be stamped at


def version_table(package: str) -> str:
    """The table recording the revision of ``package``'s service: ``<first part>_alembic_version``."""
    return f"{package.split('.')[0]}_alembic_version"


def script_location(package: str) -> Path:
    """The directory of the migrations package (where env.py and versions/ are)."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise MigrationError(f"cannot import the migrations package {package!r}: {exc}") from exc
    directories = list(getattr(module, "__path__", ()))
    if not directories or not (Path(directories[0]) / "env.py").is_file():
        raise MigrationError(f"{package} is not a package with an env.py (see flotilla_kit.migrations)")
    return Path(directories[0])


def alembic_config(package: str, connection: sa.Connection | None = None) -> Config:
    """An Alembic Config for ``package``, built in code; with ``connection``, commands run on it.

    Any ``alembic.command`` can be run with it, e.g. ``command.history(alembic_config(pkg))``.
    """
    from alembic.config import Config

    # Alembic's lines ("Context impl ...", "Running upgrade ..." before a run that may yet roll
    # back) say less than the kit's own, logged per revision once the run has committed; its
    # plugin set-up lines ("setup plugin ...") say nothing to an operator.
    for name in ("alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(name).setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(script_location(package)))
    config.attributes.update(connection=connection, version_table=version_table(package))
    return config


def run_env(*metadata: sa.MetaData, include_name: Callable[..., bool] | None = None) -> None:
    """The whole of a service's env.py: run Alembic on the connection flotilla_kit hands over.

    ``metadata`` is what the models declare (the service's ``Base.metadata``, plus
    ``flotilla_streams.schema.metadata`` for a service with an outbox or inbox): the autogenerate
    comparison (``flotilla_kit.testing.migrations``) checks the revisions against it.

    ``include_name`` (Alembic's hook: ``(name, type_, parent_names) -> bool``) leaves database objects
    that no model can declare out of that comparison, such as SQLite FTS5 tables and their shadow
    tables, or a PostgreSQL generated column.
    """
    from alembic import context

    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        raise MigrationError(
            "no connection: migrations run through flotilla_kit.migrations (the service's `migrate` command)"
        )
    context.configure(
        connection=connection,
        target_metadata=list(metadata),
        version_table=config.attributes["version_table"],
        # SQLite alters a table by copying it: autogenerate then writes batch_alter_table blocks.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
        on_version_apply=lambda *, step, heads, **_: _record_step(config.attributes, step, heads),
    )
    # The connection is already in flotilla_kit's transaction: this begins nothing, and every
    # revision of the run commits (or rolls back) together.
    with context.begin_transaction():
        context.run_migrations()


def _record_step(attributes: dict[str, Any], step: Any, heads: Any) -> None:
    attributes.setdefault("steps", []).append(step)
    attributes["heads"] = tuple(heads)


async def migrate(db: Database, package: str) -> list[Revision]:
    """Upgrade the database to the head of ``package``; return the revisions this call applied.

    Safe to run from several processes at once: each revision is applied once. Raises
    MigrationError naming the revision that failed (nothing of the run is kept), UnknownRevision
    when the database is at a revision the package does not have (a newer release migrated it).
    """
    if await _at_head(db, package):
        return []
    return await _run(db, package, lambda command, config: command.upgrade(config, "head"))


async def downgrade(db: Database, package: str, revision: str) -> list[Revision]:
    """Downgrade to ``revision`` (an id, ``"base"``, or relative like ``"-1"``); return the
    revisions reverted, in order. Raises UnknownRevision for a revision that cannot be reached."""
    return await _run(db, package, lambda command, config: command.downgrade(config, revision), downgrade=True)


async def status(db: Database, package: str) -> MigrationStatus:
    """Where the database is, the package's head, and what ``migrate`` would apply."""
    async with db.reader() as session:
        connection = await session.connection()
        return await connection.run_sync(_status, package)


def _status(connection: sa.Connection, package: str) -> MigrationStatus:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    config = alembic_config(package, connection)
    script = _script(config)
    current = _current_heads(connection, config)
    adopting = None
    if not current and _former_versions(connection) is not None:
        adopting = _adoption_revision(connection, script)
        current = (adopting,) if adopting else ()
    heads = tuple(script.get_heads())
    try:
        pending = [_revision(r) for r in reversed(list(script.iterate_revisions("heads", current or "base")))]
    except (CommandError, RevisionError) as exc:
        raise UnknownRevision(
            f"{package}: the database is at {current}, which the package cannot reach: {exc}"
        ) from exc
    return MigrationStatus(current=current, heads=heads, pending=pending, adopting=adopting)


async def _run(
    db: Database, package: str, action: Callable[[Any, Config], None], *, downgrade: bool = False
) -> list[Revision]:
    async with db.transaction() as session:
        if not db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serializes migrators
            await session.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(package))))
        connection = await session.connection()
        steps = await connection.run_sync(_run_sync, package, action, downgrade)
    for revision in steps:
        log.info("%s %s", "reverted" if downgrade else "applied", revision.name, extra={"migrations": package})
    return steps


def _run_sync(
    connection: sa.Connection, package: str, action: Callable[[Any, Config], None], downgrade: bool
) -> list[Revision]:
    from alembic import command
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    config = alembic_config(package, connection)
    script = _script(config)
    _adopt_former_runner(connection, config, script)
    config.attributes.update(steps=[], heads=_current_heads(connection, config))
    try:
        action(command, config)
    except (CommandError, RevisionError) as exc:
        raise UnknownRevision(f"{package}: {exc}") from exc
    except Exception as exc:
        failed = _failed_revision(script, config.attributes["heads"], downgrade)
        what = f"revision {failed.name}" if failed else "a revision"
        raise MigrationError(
            f"{package}: {what} failed ({'downgrade' if downgrade else 'upgrade'} rolled back): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    # A step's upper end is the revision it applied, or reverted.
    revision_ids = [revision_id for step in config.attributes["steps"] for revision_id in step.up_revision_ids]
    return [_revision(script.get_revision(revision_id)) for revision_id in revision_ids]


def _failed_revision(script: ScriptDirectory, heads: Sequence[str], downgrade: bool) -> Revision | None:
    # ``heads`` is where the run stood when it failed: a downgrade was reverting that revision, an
    # upgrade applying the next one.
    try:
        if downgrade:
            return _revision(script.get_revision(heads[0])) if heads else None
        ahead = list(script.iterate_revisions("heads", tuple(heads) or "base"))
        return _revision(ahead[-1]) if ahead else None
    except Exception:  # only to name the revision: the original error is what matters
        return None


def _script(config: Config) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config)


def _revision(script: Any) -> Revision:
    return Revision(id=script.revision, name=Path(script.path).stem)


def _current_heads(connection: sa.Connection, config: Config) -> tuple[str, ...]:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": config.attributes["version_table"]})
    return tuple(context.get_current_heads())


def _former_versions(connection: sa.Connection) -> list[int] | None:
    if not sa.inspect(connection).has_table(FORMER_RUNNER_TABLE):
        return None
    rows = connection.execute(sa.text(f"SELECT version FROM {FORMER_RUNNER_TABLE} ORDER BY version"))
    return [int(version) for (version,) in rows]


def _adoption_revision(connection: sa.Connection, script: ScriptDirectory) -> str | None:
    versions = _former_versions(connection) or []
    if versions != list(range(1, len(versions) + 1)):
        raise MigrationError(f"cannot adopt {FORMER_RUNNER_TABLE}: versions {versions} are not 1..N")
    if not versions:
        return None
    revision = f"{versions[-1]:04d}"
    if revision not in {known.revision for known in script.walk_revisions()}:
        raise UnknownRevision(f"cannot adopt {FORMER_RUNNER_TABLE}: no revision {revision!r} in {script.dir}")
    return revision


def _adopt_former_runner(connection: sa.Connection, config: Config, script: ScriptDirectory) -> None:
    """Stamp a database the former runner made at the revision it had reached, in this transaction."""
    if _current_heads(connection, config) or _former_versions(connection) is None:
        return
    from alembic import command

    revision = _adoption_revision(connection, script)
    if revision:
        command.stamp(config, revision)
    connection.execute(sa.text(f"DROP TABLE {FORMER_RUNNER_TABLE}"))
    log.info("adopted a database of the former migration runner at revision %s", revision or "base")


async def _at_head(db: Database, package: str) -> bool:
    """Whether the database is at head, found without Alembic; False when unsure (Alembic decides)."""
    heads = _heads_from_source(script_location(package) / "versions")
    if not heads:
        return False
    try:
        rows = await db.fetch_all(sa.text(f"SELECT version_num FROM {version_table(package)}"))
    except DBAPIError:  # no version table yet
        return False
    return {row[0] for row in rows} == heads


def _heads_from_source(versions: Path) -> set[str] | None:
    """The head revision ids, read from the revision files' literal ``revision``/``down_revision``
    assignments without importing them (importing a revision imports Alembic); None when a file
    does not say them literally."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        files = [path for path in versions.iterdir() if _REVISION_FILE.match(path.name)]
    except OSError:
        return None
    for path in files:
        assigned = _literal_assignments(path.read_text(encoding="utf-8"), {"revision", "down_revision"})
        revision, down = assigned.get("revision"), assigned.get("down_revision", ...)
        if not isinstance(revision, str) or down is ...:
            return None
        revisions.add(revision)
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, tuple | list):  # a merge revision
            parents.update(down)
        elif down is not None:
            return None
    return revisions - parents or None


def _literal_assignments(source: str, names: set[str]) -> dict[str, object]:
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        target, value = (
            (node.targets[0], node.value)
            if isinstance(node, ast.Assign) and len(node.targets) == 1
            else (node.target, node.value)
            if isinstance(node, ast.AnnAssign)
            else (None, None)
        )
        if isinstance(target, ast.Name) and target.id in names and value is not None:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                found[target.id] = ...  # not a literal: unknown
    return found


def _lock_key(package: str) -> int:
    # pg advisory locks take a bigint; a stable hash of the package keeps services apart.
    return zlib.crc32(package.encode())
