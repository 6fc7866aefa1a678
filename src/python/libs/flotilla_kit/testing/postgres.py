"""A throwaway PostgreSQL server for tests, started from the local server binaries.

It runs in a temporary directory on a free loopback port with durability switched off (tests
never need crash safety) and is removed on stop. As root it runs as the ``postgres`` user, since
``initdb`` refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flotilla_kit.testing.ports import free_port


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/*/bin`` with initdb (or ``$PG_BINDIR``)."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin: install them with "
            "'apt-get install -y postgresql' (.ci/run does) or set PG_BINDIR"
        )
    return Path(candidates[-1]).parent


@dataclass
class PostgresServer:
    port: int
    directory: Path
    bindir: Path
    _as_user: list[str]

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL (one per test keeps tests apart)."""
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c", f'CREATE DATABASE "{name}"'
        )
        return self.url_for(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self._as_user, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise PostgresUnavailable(
                f"{tool} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
            )
        return result


def start_postgres() -> PostgresServer:
    """Start a fresh server; the caller must ``stop()`` it. Raises PostgresUnavailable with the reason."""
    bindir = find_bindir()
    directory = Path(tempfile.mkdtemp(prefix="flotilla-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(directory, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(free_port(), directory, bindir, as_user)
    data = directory / "data"
    try:
        server._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        server._run(
            "pg_ctl", "-D", str(data), "-o", options, "-l", str(directory / "server.log"), "-w", "-t", "60", "start"
        )
    except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
        log = directory / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise PostgresUnavailable(f"could not start PostgreSQL: {exc}\n{tail}") from exc
    return server
