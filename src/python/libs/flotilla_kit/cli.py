"""The command line every service PEX exposes: ``serve``, ``migrate``, ``settings``, ``--help``.

Heavy imports (the web framework, the server) happen inside the commands that need them, so that
``--help`` and ``settings`` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from flotilla_kit.settings import ServiceSettings, SettingsError, load_settings

if TYPE_CHECKING:
    from flotilla_kit.migrations import MigrationStatus

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # sysexits' EX_UNAVAILABLE: what the service needs (its port) is taken


@dataclass(frozen=True)
class Command:
    """An extra CLI command a library or service adds (e.g. flotilla_streams' ``dlq``)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]  # adds the command's arguments
    run: Callable[[argparse.Namespace, Any], int]  # (arguments, settings) -> exit code


@dataclass(frozen=True)
class ServiceDefinition:
    """What the CLI needs to know about a service."""

    name: str
    version: str
    settings_class: type[ServiceSettings]
    create_app: Callable[[Any], Any]  # settings -> Litestar app
    default_port: int
    migrations: str | None = None  # package holding the service's migrations
    description: str = ""
    commands: Sequence[Command] = ()


class _VersionAction(argparse.Action):
    """``--version``: the text is made when asked for (it looks through the installed packages)."""

    def __init__(self, option_strings: Sequence[str], dest: str, service: ServiceDefinition, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)
        self.service = service

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(_version_text(self.service))
        parser.exit()


def _version_text(service: ServiceDefinition) -> str:
    """``catalog 0.1.0 (git 1a2b3c4)`` and the version of every lib inside, one per line."""
    from flotilla_kit.info import lib_versions, stamped_revision

    revision = os.environ.get("GIT_REVISION") or stamped_revision() or "unknown"
    libs = "".join(f"\n  {name} {version}" for name, version in lib_versions().items())
    return f"{service.name} {service.version} (git {revision}){libs}"


def _parser(service: ServiceDefinition) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=service.name,
        description=service.description or f"The {service.name} service.",
        epilog="Settings come from environment variables (run the 'settings' command to see them).",
    )
    parser.add_argument("--version", action=_VersionAction, service=service, help="show the versions and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP service until SIGTERM/SIGINT")
    serve.add_argument("--host", help="interface to listen on (overrides HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides PORT)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations on start")
    migrate = commands.add_parser("migrate", help="upgrade the database to the latest revision and exit")
    action = migrate.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show the current revision, the head and what is pending")
    action.add_argument(
        "--downgrade", metavar="REV", help="downgrade to revision REV: an id, 'base' (nothing), or relative ('-1')"
    )
    commands.add_parser("settings", help="print the effective settings as JSON and exit")
    for extra in service.commands:
        extra.configure(commands.add_parser(extra.name, help=extra.help))
    return parser


def main(service: ServiceDefinition, argv: Sequence[str] | None = None) -> int:
    args = _parser(service).parse_args(argv)
    overrides: dict[str, str] = {}
    if args.command == "serve":
        if args.host:
            overrides["HOST"] = args.host
        if args.port is not None:
            overrides["PORT"] = str(args.port)
        if args.no_migrate:
            overrides["MIGRATE_ON_START"] = "false"
    try:
        settings = load_settings(
            service.settings_class,
            {**os.environ, **overrides},
            defaults={"service_name": service.name, "port": service.default_port},
        )
    except SettingsError as exc:
        print(f"{service.name}: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from flotilla_kit.logs import configure_logging

    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    if args.command == "settings":
        return _print_settings(settings)
    if args.command == "migrate":
        return asyncio.run(_migrate(service, settings, status_only=args.status, downgrade_to=args.downgrade))
    if args.command == "serve":
        return _serve(service, settings)
    extra = next(c for c in service.commands if c.name == args.command)
    return extra.run(args, settings)


def _print_settings(settings: ServiceSettings) -> int:
    print(msgspec.json.format(msgspec.json.encode(shown_settings(settings))).decode())
    return 0


MASK = "***"
# Settings whose whole value is a secret, by name; URLs anywhere have their password masked.
_SECRET_NAME = re.compile(r"password|passwd|secret|token|credential|api_key|private", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/@:\s]*:)[^@/\s]*@")


def shown_settings(settings: ServiceSettings) -> dict[str, object]:
    """The settings the service will use (``effective_values``), fit to print: secrets masked."""
    from flotilla_kit.db import DatabaseConfigError, normalize_url

    shown = settings.effective_values()
    for name, value in shown.items():
        if isinstance(value, str) and value:
            shown[name] = MASK if _SECRET_NAME.search(name) else _URL_PASSWORD.sub(rf"\g<1>{MASK}@", value)
    try:  # the driver actually used, e.g. postgresql+asyncpg for postgres://
        shown["database_url"] = normalize_url(settings.resolved_database_url()).render_as_string(hide_password=True)
    except DatabaseConfigError:
        pass  # `serve` refuses it, naming the reason; shown as given, password masked
    return shown


async def _migrate(
    service: ServiceDefinition, settings: ServiceSettings, *, status_only: bool, downgrade_to: str | None
) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from flotilla_kit import migrations
    from flotilla_kit.db import Database, DatabaseConfigError

    package = service.migrations
    if not package:
        print(f"{service.name} has no migrations")
        return 0
    try:
        db = Database(settings.resolved_database_url())
    except DatabaseConfigError as exc:
        print(f"{service.name}: DATABASE_URL: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if status_only:
            _print_status(await migrations.status(db, package))
        elif downgrade_to is not None:
            reverted = await migrations.downgrade(db, package, downgrade_to)
            for revision in reverted:
                print(f"reverted  {revision.name}")
            now = (await migrations.status(db, package)).current
            print(f"{len(reverted)} migration(s) reverted; database {db.describe()} is at {_revisions(now)}")
        else:
            applied = await migrations.migrate(db, package)
            for revision in applied:
                print(f"applied  {revision.name}")
            print(f"{len(applied)} migration(s) applied; database {db.describe()} is up to date")
        return 0
    except migrations.UnknownRevision as exc:
        print(f"{service.name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (migrations.MigrationError, SQLAlchemyError, OSError) as exc:
        print(f"{service.name}: migration failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()


def _print_status(status: MigrationStatus) -> None:
    from flotilla_kit import migrations

    # A database of the former runner: its revision is stamped by the next migrate.
    adopted = f" (per {migrations.FORMER_RUNNER_TABLE}; stamped on the next migrate)" if status.adopting else ""
    print(f"current  {_revisions(status.current)}{adopted}")
    print(f"head     {_revisions(status.heads)}")
    for revision in status.pending:
        print(f"pending  {revision.name}")
    if not status.pending:
        print("up to date")


def _revisions(ids: Sequence[str]) -> str:
    return ", ".join(ids) if ids else "base (no revision)"


def _serve(service: ServiceDefinition, settings: ServiceSettings) -> int:
    from flotilla_kit.db import DatabaseConfigError, normalize_url
    from flotilla_kit.server import PortUnavailable, serve

    try:
        normalize_url(settings.resolved_database_url())
    except DatabaseConfigError as exc:
        print(f"{service.name}: DATABASE_URL: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        app = service.create_app(settings)
    except SettingsError as exc:  # settings that parse but do not fit together (a key file, a table)
        print(f"{service.name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return serve(app, settings)
    except PortUnavailable as exc:
        print(f"{service.name}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
