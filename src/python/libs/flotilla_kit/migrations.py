"""Forward-only schema migrations owned by each service.

A service keeps its migrations as modules of one package, named ``NNNN_what_it_does.py``, each with
``def upgrade(connection: sqlalchemy.Connection) -> None``. They define the tables they create
themselves (never import the service's models, which move on). Applied versions are recorded in
``flotilla_schema_migrations``; each migration runs in its own transaction, under a lock, so two
instances starting at once apply it once.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_kit.db import Database

log = logging.getLogger(__name__)

_MODULE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)$")

_metadata = sa.MetaData()
applied_table = sa.Table(
    "flotilla_schema_migrations",
    _metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


class MigrationError(RuntimeError):
    """The migrations package is malformed, or a migration failed (its transaction rolled back)."""


class Migration(NamedTuple):
    version: int
    name: str
    upgrade: Callable[[sa.Connection], None]


def discover(package: str) -> list[Migration]:
    """The migrations in ``package``, ordered by version. Works inside zipped PEX files too."""
    module = importlib.import_module(package)
    found: list[Migration] = []
    for info in pkgutil.iter_modules(module.__path__):
        match = _MODULE_NAME.match(info.name)
        if not match:
            continue
        migration_module = importlib.import_module(f"{package}.{info.name}")
        upgrade = getattr(migration_module, "upgrade", None)
        if not callable(upgrade):
            raise MigrationError(f"{package}.{info.name} has no upgrade(connection) function")
        found.append(Migration(int(match.group(1)), match.group(2), upgrade))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{package} has two migrations with the same version: {versions}")
    return found


async def applied_versions(db: Database) -> set[int]:
    async with db.transaction() as session:
        return await _applied(session)


async def _applied(session: AsyncSession) -> set[int]:
    connection = await session.connection()
    await connection.run_sync(_metadata.create_all)
    return set((await session.scalars(sa.select(applied_table.c.version))).all())


async def pending(db: Database, package: str) -> list[Migration]:
    done = await applied_versions(db)
    return [m for m in discover(package) if m.version not in done]


async def migrate(db: Database, package: str) -> list[Migration]:
    """Apply every pending migration of ``package`` in order; return the ones this call applied."""
    applied_now: list[Migration] = []
    for migration in discover(package):
        async with db.transaction() as session:
            if not db.is_sqlite:  # SQLite's BEGIN IMMEDIATE already serializes migrators
                await session.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(package))))
            if migration.version in await _applied(session):
                continue
            connection = await session.connection()
            try:
                await connection.run_sync(migration.upgrade)
            except Exception as exc:
                raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
            await session.execute(
                applied_table.insert().values(
                    version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
                )
            )
        log.info("applied migration %04d_%s", migration.version, migration.name)
        applied_now.append(migration)
    return applied_now


def _lock_key(package: str) -> int:
    # pg advisory locks take a bigint; a stable hash of the package keeps services apart.
    return zlib.crc32(package.encode())
