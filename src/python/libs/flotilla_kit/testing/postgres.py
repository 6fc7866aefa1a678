"""A PostgreSQL server started from the local server binaries: throwaway for tests, or on a kept directory.

``start_postgres()`` runs one in a temporary directory on a free loopback port with durability
switched off (tests never need crash safety) and removes it on stop. ``server_on(directory)``
describes one on a directory that is kept (the local stack's): ``initialize()`` runs initdb only
the first time, ``server_command()`` is the server in the foreground for a supervisor to run as
its child, ``ensure_database()`` creates a database only if it is missing. As root the server runs
as the ``postgres`` user, since ``initdb`` and ``postgres`` refuse to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flotilla_kit.testing.ports import free_port

INSTALL_HINT = "install the `postgresql` package (e.g. 'apt-get install -y postgresql')"
# The tools used here; a directory without them is not a server installation.
_TOOLS = ("initdb", "postgres", "pg_ctl", "psql")


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb (or ``$PG_BINDIR``, checked for the tools)."""
    if os.environ.get("PG_BINDIR"):
        bindir = Path(os.environ["PG_BINDIR"])
        missing = [tool for tool in _TOOLS if not (bindir / tool).is_file()]
        if missing:
            raise PostgresUnavailable(
                f"PG_BINDIR={bindir} has no {', '.join(missing)}: point it at the PostgreSQL server binaries, "
                f"or unset it and {INSTALL_HINT}"
            )
        return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        raise PostgresUnavailable(
            f"PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: {INSTALL_HINT} "
            "(.ci/run does) or set PG_BINDIR"
        )
    return Path(candidates[-1]).parent


def server_account() -> pwd.struct_passwd | None:
    """The account the server must run as: ``postgres`` when we are root, None (ourselves) otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            f"as root, PostgreSQL must run as the `postgres` user, and there is none: {INSTALL_HINT}, which creates it"
        ) from None


def _as_user(account: pwd.struct_passwd | None) -> list[str]:
    return ["runuser", "-u", account.pw_name, "--"] if account else []


def reachable_by(account: pwd.struct_passwd | None, directory: Path) -> bool:
    """Whether ``account`` can write in ``directory`` (every parent searchable: /root is mode 700)."""
    if account is None:
        return os.access(directory, os.W_OK | os.X_OK)
    check = subprocess.run([*_as_user(account), "test", "-w", str(directory), "-a", "-x", str(directory)], cwd="/")
    return check.returncode == 0


def accepting_connections(port: int, host: str = "127.0.0.1") -> bool:
    """Whether the server on ``port`` takes a session (what pg_isready checks): not while it starts or stops."""
    # A startup message for user postgres; the first reply is 'R' (authentication) when sessions are
    # accepted, 'E' ("the database system is starting up") when not.
    body = struct.pack("!I", 196608) + b"user\0postgres\0database\0postgres\0\0"
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.sendall(struct.pack("!I", len(body) + 4) + body)
            accepted = connection.recv(1) == b"R"
            if accepted:
                connection.sendall(b"X\0\0\0\4")  # Terminate
            return accepted
    except OSError:
        return False


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


@dataclass
class PostgresServer:
    port: int
    directory: Path  # the cluster is in directory/data
    bindir: Path
    _as_user: list[str]

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (one per test keeps tests apart)."""
        self._psql(f"CREATE DATABASE {_quote_identifier(name)}")
        return self.url_for(name)

    def ensure_database(self, name: str) -> str:
        """Create the database unless it exists (a kept server's data) and return its URL."""
        found = self._psql(f"SELECT 1 FROM pg_database WHERE datname = {_quote_literal(name)}")
        if not found.stdout.strip():
            self.create_database(name)
        return self.url_for(name)

    def initialize(self, *, durable: bool = True) -> bool:
        """Run initdb unless the directory holds a cluster already; True when it made one."""
        if (self.data / "PG_VERSION").exists():
            return False
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", *_no_sync(durable))
        return True

    def server_options(self, *, durable: bool = True, socket_dir: Path | None = None) -> list[str]:
        """The server's settings: loopback TCP only (a Unix socket too only in ``socket_dir``)."""
        sockets = str(socket_dir) if socket_dir else ""  # "": none, so no socket path length limit applies
        options = ["-p", str(self.port), "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}"]
        if not durable:
            options += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return options

    def server_command(self, *, durable: bool = True) -> list[str]:
        """The server in the foreground, to run as a child (as the account of ``server_account()``)."""
        return [str(self.bindir / "postgres"), "-D", str(self.data), *self.server_options(durable=durable)]

    def version(self) -> str:
        """The server's version, e.g. ``16.4``."""
        output = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True, text=True).stdout
        found = re.search(r"\(PostgreSQL\) (\S+)", output)  # "postgres (PostgreSQL) 15.18 (Debian ...)"
        return found.group(1) if found else "-"

    def stop(self, *, mode: str = "immediate", remove: bool = True) -> None:
        """Stop the server (``pg_ctl stop -m mode``); ``remove`` deletes its directory (a throwaway one)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _psql(self, sql: str) -> subprocess.CompletedProcess[str]:
        return self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qtA", "-c", sql)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            # cwd "/": the server's account may not be allowed into ours (initdb warns about it).
            [*self._as_user, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
        )
        if check and result.returncode != 0:
            raise PostgresUnavailable(
                f"{tool} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result


def _no_sync(durable: bool) -> list[str]:
    return [] if durable else ["--no-sync"]


def server_on(directory: Path, *, port: int | None = None, bindir: Path | None = None) -> PostgresServer:
    """A server on ``directory`` (made, and given to the server's account), not started; nothing is removed."""
    bindir = bindir or find_bindir()
    account = server_account()
    directory.mkdir(parents=True, exist_ok=True)
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    return PostgresServer(port or free_port(), directory, bindir, _as_user(account))


def start_postgres() -> PostgresServer:
    """Start a fresh server; the caller must ``stop()`` it. Raises PostgresUnavailable with the reason."""
    bindir = find_bindir()
    directory = Path(tempfile.mkdtemp(prefix="flotilla-pg-"))
    try:
        server = server_on(directory, bindir=bindir)
        server.initialize(durable=False)
        options = " ".join(server.server_options(durable=False, socket_dir=directory))
        server._run(
            "pg_ctl", "-D", str(server.data), "-o", options, "-l", str(directory / "server.log"), "-w", "-t", "60",
            "start",
        )  # fmt: skip
    except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
        log = directory / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc}\n{tail}") from exc
    return server
