"""``stack up | down | status | logs | demo``: the whole platform on this machine, one process per instance.

``up`` is the supervisor: unless it runs from the sources, it first builds the services' PEX files
with ``./pants`` when it runs in the build root. It starts Redis (AOF under the data dir) and, with
``--postgres``, a PostgreSQL server (its cluster kept under the data dir), every service instance
(each service on its own SQLite file in the data dir, or its own PostgreSQL database, shared by its
replicas), then the gateway; it waits until every instance is ready, prints where things are and
streams the logs until SIGINT/SIGTERM, then stops everything in order: gateway first (no new work),
the services, Redis and PostgreSQL last (services flush their outboxes from the one into the
other). Children get a signal from the kernel when the supervisor dies, even by ``kill -9``, so no
process is left behind. ``down`` asks the supervisor to stop (or, if it is gone, stops what the
state file lists, in the same order). ``logs`` prints (or follows) the instances' log files,
readable; ``demo`` places the shop's three kinds of orders through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import ctypes
import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from redis.exceptions import RedisError
from stack.console_login import console_link, new_console_secret
from stack.demo import DemoFailed, run_demo
from stack.logview import LogFollower, last_lines, print_logs
from stack.node import NodeUnavailable, find_service
from stack.runner import GROUPS, SERVICES
from stack.state import Instance, PostgresInfo, StackLock, StackState, alive, read_state, remove_state, write_state

from flotilla_kit.info import read_version
from flotilla_kit.server import PortUnavailable, check_port_free
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.postgres import (
    PostgresServer,
    PostgresUnavailable,
    accepting_connections,
    find_bindir,
    reachable_by,
    server_account,
    server_on,
)
from flotilla_kit.testing.redis import RedisUnavailable, find_redis_server
from flotilla_streams.stats import group_stats

EXIT_FAILED = 1
EXIT_USAGE = 2
GATEWAY = "gateway"
CONSOLE = "console"
REDIS = "redis"
POSTGRES = "postgres"

_PR_SET_PDEATHSIG = 1
# Looked up once here: loading libc in the forked child could wait on a lock another thread held.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


class StackError(Exception):
    """Bad use or a failed start: the message is for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class Stopped(Exception):
    """SIGINT or SIGTERM arrived: stop everything."""


def _die_with_supervisor(signum: int = signal.SIGTERM) -> None:
    # Runs in the child before exec (after the switch to another user, which would clear it): this
    # signal from the kernel when the supervisor's main thread ends.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signum)


# --- arguments


def parse_replicas(text: str) -> dict[str, int]:
    """``orders=2,inventory=2`` -> counts per service (1 for the rest). Raises StackError (usage)."""
    counts = dict.fromkeys(SERVICES, 1)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        name = name.strip()
        if name not in SERVICES:
            valid = ", ".join(SERVICES)
            hint = " (the gateway runs once)" if name == GATEWAY else ""
            raise StackError(f"--replicas: unknown service {name!r}{hint}; valid services: {valid}", EXIT_USAGE)
        if not count.strip().isdigit() or not 1 <= int(count) <= 16:
            raise StackError(f"--replicas: {part!r}: the count must be a whole number from 1 to 16", EXIT_USAGE)
        counts[name] = int(count)
    return counts


def _ratio(text: str) -> float:
    """``--trace-ratio``: a number from 0 to 1 (argparse names the option and the value on error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


# --- processes


@dataclass
class Launched:
    record: Instance
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    stop_signal: int = signal.SIGTERM

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.record.port}"


def _launch(
    command: Sequence[str],
    *,
    service: str,
    instance: str,
    port: int,
    env: dict[str, str],
    data_dir: Path,
    account: pwd.struct_passwd | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Launched:
    """Start one instance, logging to its file; ``account``: run as that user; ``stop_signal`` stops it."""
    log_path = data_dir / "logs" / f"{instance}.log"
    log_file = open(log_path, "ab")  # closed when the process is stopped; the child writes to it as any user
    process = subprocess.Popen(
        list(command),
        env={**os.environ, **env},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd="/" if account else None,  # ours may be closed to that user
        # Its own process group: Ctrl-C in the terminal reaches the supervisor only, which stops
        # the instances in order; and a group kill takes a service's server worker with it.
        start_new_session=True,
        preexec_fn=lambda: _die_with_supervisor(stop_signal),
        user=account.pw_uid if account else None,
        group=account.pw_gid if account else None,
        extra_groups=[] if account else None,  # not root's groups
    )
    return Launched(
        Instance(service=service, instance=instance, port=port, pid=process.pid, log=str(log_path)),
        process,
        log_file,
        stop_signal,
    )


def _stop_pid(pid: int, timeout: float = 30.0, signum: int = signal.SIGTERM) -> None:
    """``signum`` (SIGTERM), wait, then SIGKILL the process group of whatever is left."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # leftovers (a server worker) and a process that would not stop


def _stop_launched(launched: Sequence[Launched]) -> None:
    """Stop these together (SIGTERM each, then wait for all)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(launched))) as pool:
        list(pool.map(lambda one: _stop_pid(one.process.pid, signum=one.stop_signal), launched))
    for one in launched:
        with contextlib.suppress(subprocess.TimeoutExpired):
            one.process.wait(5)  # reap
        one.log_file.close()


def _get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            body = json.loads(response.read())
            return body if isinstance(body, dict) else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
        return None


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _redis_ready(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _is_ready(record: Instance) -> bool:
    if record.service == REDIS:
        return _redis_ready(record.port)
    if record.service == POSTGRES:
        return accepting_connections(record.port)
    return _ready(record.port)


def _version(record: Instance, state: StackState) -> str:
    if record.service == REDIS:
        return "-"
    if record.service == POSTGRES:
        return state.postgres.version if state.postgres else "-"
    info = _get_json(f"http://127.0.0.1:{record.internal_port or record.port}/info")
    if info and isinstance(info.get("version"), str):
        return str(info["version"])
    return read_version(record.service)


# --- the status table


def status_rows(state: StackState) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for record in state.instances:
        running = alive(record.pid)
        ready = running and _is_ready(record)
        version = _version(record, state) if running else "-"
        rows.append(
            (
                record.service,
                record.instance,
                str(record.port),
                str(record.pid),
                "yes" if ready else ("no" if running else "exited"),
                version,
            )
        )
    return rows


def stream_rows(state: StackState) -> list[tuple[str, ...]]:
    """Per stream and consumer group of the shop: length, pending, lag, oldest pending, dead letters, and
    how often the group was found missing and recreated (Redis lost its data: events may be lost)."""
    redis_record = next((r for r in state.instances if r.service == REDIS and alive(r.pid)), None)
    if redis_record is None:
        return []

    async def collect() -> list[tuple[str, ...]]:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_record.port}/0", socket_timeout=5)
        rows: list[tuple[str, ...]] = []
        try:
            for stream, group in GROUPS:
                stats = await group_stats(client, stream, group)
                if stats is None:
                    rows.append((stream, group, "-", "-", "-", "-", "-", "-"))
                    continue
                oldest = f"{stats.oldest_pending_idle_ms / 1000:.1f}s" if stats.pending else "-"
                rows.append(
                    (
                        stream,
                        group,
                        *map(str, (stats.length, stats.pending, stats.lag)),
                        oldest,
                        str(stats.dlq_length),
                        str(stats.recreated),
                    )
                )
        finally:
            await client.aclose()
        return rows

    try:
        return asyncio.run(collect())
    except (RedisError, OSError) as exc:
        return [("(streams unavailable)", f"{type(exc).__name__}: {exc}", "", "", "", "", "", "")]


STREAM_HEADER = ("STREAM", "GROUP", "LENGTH", "PENDING", "LAG", "OLDEST PENDING", "DLQ", "RECREATED")


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ()) -> str:
    header = header or ("SERVICE", "INSTANCE", "PORT", "PID", "READY", "VERSION")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


# --- up


@dataclass
class UpOptions:
    data_dir: Path
    from_source: bool
    replicas: dict[str, int]
    port: int
    dist_dir: Path
    ready_timeout: float
    postgres: bool = False
    build: bool = True
    console: bool = True
    console_port: int = 8006
    console_write: bool = False
    trace_ratio: float = 1.0


PROCESSES = (*SERVICES, GATEWAY, CONSOLE)  # every service `up` runs from its PEX
SERVICE_TARGETS = tuple(f"src/python/services/{name}:{name}" for name in PROCESSES)  # their pex_binary


def _build_root() -> Path | None:
    """The current directory when it is a Pants build root with its launcher (``./pants run`` runs us there)."""
    here = Path.cwd()
    launcher = here / "pants"
    if launcher.is_file() and os.access(launcher, os.X_OK) and (here / "pants.toml").is_file():
        return here
    return None


def _postgres_directory(data_dir: Path, account: pwd.struct_passwd | None) -> Path:
    """Where the cluster is kept: ``<data dir>/postgres``, or where that link points.

    As root the server runs as ``postgres``, which may not reach the data dir (paths under /root are
    mode 700). Then the cluster goes to a new directory in that user's home, and ``<data dir>/postgres``
    becomes a link to it, so the next ``up`` on this data dir finds it again. Nobody's home is chmod-ed.
    """
    link = data_dir / POSTGRES
    if link.is_symlink():
        return link.resolve()
    if account is None:
        return link
    link.mkdir(exist_ok=True)
    os.chown(link, account.pw_uid, account.pw_gid)
    if reachable_by(account, link):
        return link
    if any(link.iterdir()):
        raise StackError(
            f"PostgreSQL runs as the `{account.pw_name}` user, which cannot reach {link}, and that directory is not "
            f"empty; move it where `{account.pw_name}` can reach it and link {link} to it"
        )
    link.rmdir()
    home = Path(account.pw_dir) / "flotilla"
    home.mkdir(exist_ok=True)
    os.chown(home, account.pw_uid, account.pw_gid)
    target = Path(tempfile.mkdtemp(prefix=f"{data_dir.name.lstrip('.') or 'data'}-", dir=home))
    link.symlink_to(target)
    print(
        f"PostgreSQL runs as the `{account.pw_name}` user, which cannot reach {data_dir}: its data is kept in {target} "
        f"(linked from {link}); remove both to start over",
        file=sys.stderr,
        flush=True,
    )
    return target


class Supervisor:
    def __init__(self, options: UpOptions) -> None:
        self.options = options
        self.data_dir = options.data_dir
        self.state = StackState(supervisor_pid=os.getpid(), phase="starting")
        self.redis: Launched | None = None
        self.postgres: Launched | None = None
        self.postgres_server: PostgresServer | None = None
        self.postgres_bindir: Path | None = None
        self.postgres_account: pwd.struct_passwd | None = None
        self.services: list[Launched] = []
        self.gateway: Launched | None = None
        self.console: Launched | None = None

    # commands and settings

    def _command(self, service: str, port: int) -> list[str]:
        if self.options.from_source:
            return [sys.executable, "-m", service, "serve", "--port", str(port)]
        return [str(self._pex(service)), "serve", "--port", str(port)]

    def _pex(self, service: str) -> Path:
        return self.options.dist_dir / f"src.python.services.{service}" / f"{service}.pex"

    def build(self) -> None:
        """In the build root, ``./pants package`` the services' PEX files (up to date ones cost seconds)."""
        if self.options.from_source or not self.options.build or (root := _build_root()) is None:
            return
        command = ["./pants", "--concurrent", f"--pants-distdir={self.options.dist_dir}", "package", *SERVICE_TARGETS]
        print(f"building the services: {shlex.join(command)}", file=sys.stderr, flush=True)
        # Pants' own output shows the progress; the kernel stops it too if we are killed.
        result = subprocess.run(command, cwd=root, stdin=subprocess.DEVNULL, preexec_fn=_die_with_supervisor)
        if result.returncode != 0:
            raise StackError(
                f"building the services failed: `{shlex.join(command)}` exited with status {result.returncode} "
                "(its output is above); fix the build, or run from the sources with --from-source"
            )

    def check_pexes(self) -> None:
        if self.options.from_source:
            return
        missing = [str(self._pex(s)) for s in PROCESSES if not self._pex(s).exists()]
        if missing:
            raise StackError(
                "missing PEX: " + ", ".join(missing) + "\nbuild them with `./pants package ::`"
                " (or run from the sources with --from-source)"
            )

    def check_postgres(self) -> None:
        """With --postgres: the server binaries and the account to run them as, before anything starts."""
        if not self.options.postgres:
            return
        try:
            self.postgres_bindir = find_bindir()
            self.postgres_account = server_account()
        except PostgresUnavailable as exc:
            raise StackError(f"--postgres: {exc}") from None

    def _env(self, instance: str) -> dict[str, str]:
        assert self.redis is not None
        env = {
            "DISCOVERY": "redis",
            "REDIS_URL": f"redis://127.0.0.1:{self.redis.record.port}/0",
            "INSTANCE_ID": instance,
            "HOST": "127.0.0.1",
        }
        if self.options.from_source:
            env["PYTHONPATH"] = os.pathsep.join(sys.path)
        if self.console is not None:  # every service and the gateway send their traces to the console
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.console.url
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/json"  # the console reads both; JSON costs less CPU per span
            env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            env["OTEL_TRACES_SAMPLER_ARG"] = str(self.options.trace_ratio)
        return env

    def token_command(self) -> str:
        key = shlex.quote(str(self.data_dir / "jwt-private.pem"))
        if self.options.from_source:
            return f"PYTHONPATH=src/python/libs:src/python/services python -m gateway token --private-key {key} --sub me --roles admin"
        return f"{shlex.quote(str(self._pex(GATEWAY)))} token --private-key {key} --sub me --roles admin"

    # steps

    def _save(self) -> None:
        backing = [x for x in (self.redis, self.postgres) if x]
        front = [x for x in (self.console, *self.services, self.gateway) if x]
        records = [x.record for x in backing + front]
        self.state.instances = records
        write_state(self.data_dir, self.state)

    def _keys(self) -> Path:
        """The gateway's key pair, made once per data dir (tokens made earlier stay valid)."""
        private_path, public_path = self.data_dir / "jwt-private.pem", self.data_dir / "jwt-public.pem"
        if not (private_path.exists() and public_path.exists()):
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as private_file:
                private_file.write(pem)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            public_path.write_bytes(public)
        return public_path

    def start_redis(self) -> None:
        try:
            executable = find_redis_server()
        except RedisUnavailable as exc:
            raise StackError(f"cannot start Redis: {exc}") from None
        redis_dir = self.data_dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        port = free_port()
        command = [
            executable, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir), "--daemonize", "no",
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        ]  # fmt: skip
        self.redis = _launch(command, service=REDIS, instance=REDIS, port=port, env={}, data_dir=self.data_dir)
        self._save()

    def start_postgres(self) -> None:
        """With --postgres: the server on its kept cluster (made on the first run), as a child of ours."""
        if not self.options.postgres:
            return
        account = self.postgres_account
        directory = _postgres_directory(self.data_dir, account)
        try:
            server = server_on(directory, bindir=self.postgres_bindir)
            if server.initialize():
                print(f"  made a PostgreSQL cluster in {server.data}", file=sys.stderr, flush=True)
        except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
            raise StackError(f"--postgres: cannot prepare the cluster in {directory}: {exc}") from None
        self.postgres_server = server
        self.state.postgres = PostgresInfo(
            bindir=str(server.bindir),
            directory=str(server.directory),
            user=account.pw_name if account else "",
            version=server.version(),
        )
        # SIGINT is PostgreSQL's fast shutdown: sessions are ended instead of waited for.
        self.postgres = _launch(
            server.server_command(),
            service=POSTGRES,
            instance=POSTGRES,
            port=server.port,
            env={},
            data_dir=self.data_dir,
            account=account,
            stop_signal=signal.SIGINT,
        )
        self._save()

    def wait_backing(self) -> None:
        """Redis (and PostgreSQL) ready; then each service's database, made if missing."""
        self._wait([x for x in (self.redis, self.postgres) if x], "redis and postgres" if self.postgres else "redis")
        if self.postgres_server:
            try:
                for service in SERVICES:
                    self.postgres_server.ensure_database(service)
            except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
                raise StackError(f"--postgres: cannot create the services' databases: {exc}") from None

    def _database_url(self, service: str) -> str:
        if self.postgres_server:
            return self.postgres_server.url_for(service)
        return f"sqlite:///{self.data_dir / service}.db"

    def start_services(self) -> None:
        # First instances together, then the further replicas: replicas share a database, and two
        # processes migrating one at once could both try to create its tables.
        rounds = max(self.options.replicas.values())
        for number in range(1, rounds + 1):
            batch = []
            for service in SERVICES:
                if self.options.replicas[service] < number:
                    continue
                instance = f"{service}-{number}"
                port = free_port()
                env = {**self._env(instance), "DATABASE_URL": self._database_url(service)}
                launched = _launch(
                    self._command(service, port),
                    service=service,
                    instance=instance,
                    port=port,
                    env=env,
                    data_dir=self.data_dir,
                )
                self.services.append(launched)
                batch.append(launched)
            self._save()
            self._wait(batch, "services")

    def start_node_services(self) -> None:
        """The Node.js loyalty service (stack.node), from its sources, when Node.js and its packages are here;
        else one line says why not, and the rest runs without it."""
        try:
            service = find_service()
        except NodeUnavailable as exc:
            print(f"  loyalty (Node.js) not started: {exc}", file=sys.stderr, flush=True)
            return
        instance, port = f"{service.name}-1", free_port()
        env = {**self._env(instance), "PORT": str(port), "SERVICE_NAME": service.name}
        launched = _launch(
            service.command, service=service.name, instance=instance, port=port, env=env, data_dir=self.data_dir
        )
        self.services.append(launched)
        self._save()
        self._wait([launched], service.name)

    def start_console(self) -> None:
        """The console, before the services: they export their traces to it from their first request.

        On its own SQLite file (also with --postgres: its trace store is a bounded buffer, not data).
        """
        if not self.options.console:
            return
        port = self.options.console_port
        env = {
            **self._env(f"{CONSOLE}-1"),
            "DATABASE_URL": f"sqlite:///{self.data_dir / CONSOLE}.db",
            # Operators log in with a one-time link (signed with this secret) or the gateway's tokens.
            "CONSOLE_SECRET": new_console_secret(self.data_dir),
            "JWT_PUBLIC_KEY_FILE": str(self._keys()),
            "CONSOLE_WRITE": str(self.options.console_write).lower(),
        }
        self.console = _launch(
            self._command(CONSOLE, port),
            service=CONSOLE,
            instance=f"{CONSOLE}-1",
            port=port,
            env=env,
            data_dir=self.data_dir,
        )
        self._save()
        self._wait([self.console], "console")

    def start_gateway(self) -> None:
        public_key = self._keys()
        port = self.options.port
        internal = free_port()
        env = {**self._env(f"{GATEWAY}-1"), "JWT_PUBLIC_KEY_FILE": str(public_key), "INTERNAL_PORT": str(internal)}
        self.gateway = _launch(
            self._command(GATEWAY, port),
            service=GATEWAY,
            instance=f"{GATEWAY}-1",
            port=port,
            env=env,
            data_dir=self.data_dir,
        )
        self.gateway.record.internal_port = internal
        self._save()
        self._wait([self.gateway], "gateway")

    def _wait(self, batch: Sequence[Launched], what: str) -> None:
        """Until every one of ``batch`` is ready, with a live progress line; StackError on a failure."""
        started = time.monotonic()
        deadline = started + self.options.ready_timeout
        pending = list(batch)
        tty = sys.stderr.isatty()
        while pending:
            for one in list(pending):
                if one.process.poll() is not None:
                    raise self._failure(one, f"exited with status {one.process.returncode} before it was ready")
                if _is_ready(one.record):
                    pending.remove(one)
                    if not tty:
                        print(f"  {one.record.instance} ready", file=sys.stderr, flush=True)
            if tty:
                done = len(batch) - len(pending)
                waiting = ", ".join(one.record.instance for one in pending)
                line = f"starting {what}: {done}/{len(batch)} ready, {time.monotonic() - started:4.1f}s" + (
                    f" (waiting for {waiting})" if waiting else ""
                )
                print(f"\r\x1b[2K{line}", end="" if pending else "\n", file=sys.stderr, flush=True)
            if pending and time.monotonic() > deadline:
                raise self._failure(pending[0], f"not ready after {self.options.ready_timeout:g}s")
            if pending:
                time.sleep(0.1)

    def _failure(self, one: Launched, what: str) -> StackError:
        tail = "\n".join(f"  {line}" for line in last_lines(Path(one.record.log)))
        tail = tail or "  (nothing logged yet)"
        return StackError(f"{one.record.instance} {what}; its last log lines ({one.record.log}):\n{tail}")

    def stop(self) -> None:
        """Gateway first, then the services, the console (the services' last spans go to it), Redis and PostgreSQL last."""
        if self.state.instances:
            self.state.phase = "stopping"
            write_state(self.data_dir, self.state)
        if self.gateway:
            _stop_launched([self.gateway])
        _stop_launched(self.services)
        if self.console:
            _stop_launched([self.console])
        _stop_launched([x for x in (self.redis, self.postgres) if x])
        remove_state(self.data_dir)


def _raise_stopped(signum: int, frame: object) -> None:
    # Once: a second Ctrl-C must not interrupt the ordered stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Stopped()


def up(options: UpOptions) -> int:
    options.data_dir.mkdir(parents=True, exist_ok=True)
    (options.data_dir / "logs").mkdir(exist_ok=True)
    lock = StackLock(options.data_dir)
    if not lock.acquire():
        state = read_state(options.data_dir)
        where = f" (pid {state.supervisor_pid}, gateway {state.gateway_url or 'starting'})" if state else ""
        raise StackError(f"a stack is already running on {options.data_dir}{where}; stop it with `stack down` first")
    supervisor = Supervisor(options)
    follower: LogFollower | None = None
    signal.signal(signal.SIGINT, _raise_stopped)
    signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        try:
            check_port_free("127.0.0.1", options.port)
        except PortUnavailable as exc:
            raise StackError(f"gateway: {exc}; choose another with --port") from None
        if options.console:
            try:
                check_port_free("127.0.0.1", options.console_port)
            except PortUnavailable as exc:
                raise StackError(f"console: {exc}; choose another with --console-port, or --no-console") from None
        supervisor.check_postgres()
        supervisor.build()
        supervisor.check_pexes()
        supervisor.start_redis()
        supervisor.start_postgres()
        supervisor.wait_backing()
        supervisor.start_console()
        supervisor.start_services()
        supervisor.start_node_services()
        supervisor.start_gateway()
        assert supervisor.gateway is not None
        supervisor.state.phase = "running"
        supervisor.state.gateway_url = supervisor.gateway.url
        supervisor.state.console_url = supervisor.console.url if supervisor.console else ""
        supervisor.state.token_command = supervisor.token_command()
        supervisor._save()
        _print_summary(supervisor.state, options.data_dir)
        follower = LogFollower(
            [(x.record.instance, Path(x.record.log)) for x in supervisor.services + [supervisor.gateway]]
            + (
                [(supervisor.console.record.instance, Path(supervisor.console.record.log))]
                if supervisor.console
                else []
            )
        )
        follower.start()
        while True:
            time.sleep(3600)
    except Stopped:
        backing = "redis and postgres" if options.postgres else "redis"
        print(f"\nstopping: gateway, services, console, {backing} ...", file=sys.stderr, flush=True)
        return 0
    except StackError:
        print("\nstopping everything that was started", file=sys.stderr, flush=True)
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
        if follower:
            follower.stop()
        lock.release()
        print("stopped", file=sys.stderr, flush=True)


def _print_summary(state: StackState, data_dir: Path) -> None:
    print(f"\nthe platform is up: {state.gateway_url}")
    if state.console_url:
        print(f"the console (services, streams, sagas, traces), a one-time login link: {console_link(state, data_dir)}")
    print()
    print(format_table(status_rows(state)))
    print(f"\na token for the gateway:\n  {state.token_command}")
    print(f'  curl -H "authorization: Bearer $TOKEN" {state.gateway_url}/api/orders\n', flush=True)


# --- down and status


def _running_state(data_dir: Path, *, clean: bool = False) -> StackState:
    """The state of the stack running on ``data_dir``; StackError if none. ``clean``: remove a stale file."""
    state = read_state(data_dir)
    if state is None or not (alive(state.supervisor_pid) or any(alive(x.pid) for x in state.instances)):
        stale = ""
        if state is not None and clean:
            # Left by an `up` that was killed; its instances died with it.
            remove_state(data_dir)
            stale = f" (removed the state file left by pid {state.supervisor_pid}, which was killed)"
        raise StackError(f"no stack is running on {data_dir}{stale}")
    return state


def _stop_postgres(state: StackState, record: Instance) -> None:
    """A PostgreSQL server the supervisor could not stop: ``pg_ctl stop -m fast`` as its user, else a signal."""
    if state.postgres is not None:
        info = state.postgres
        as_user = ["runuser", "-u", info.user, "--"] if info.user and os.geteuid() == 0 else []
        server = PostgresServer(record.port, Path(info.directory), Path(info.bindir), as_user)
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired, OSError):
            server.stop(mode="fast", remove=False)
    _stop_pid(record.pid, signum=signal.SIGINT)  # returns at once when pg_ctl stopped it


def down(data_dir: Path, timeout: float = 120.0) -> int:
    state = _running_state(data_dir, clean=True)
    if alive(state.supervisor_pid):
        # The supervisor stops its children in order and removes the state file.
        os.kill(state.supervisor_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(state.supervisor_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(state.supervisor_pid):
            raise StackError(f"the stack (pid {state.supervisor_pid}) did not stop within {timeout:g}s")
    # What is still listed (the supervisor was killed before it could stop them): same order.
    order = {GATEWAY: 0, CONSOLE: 2, REDIS: 3, POSTGRES: 3}

    def stop(record: Instance) -> None:
        if record.service == POSTGRES:
            _stop_postgres(state, record)
        else:
            _stop_pid(record.pid)

    for rank in range(4):
        batch = [x for x in state.instances if order.get(x.service, 1) == rank and alive(x.pid)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(batch))) as pool:
            list(pool.map(stop, batch))
    remove_state(data_dir)
    print(f"stopped the stack on {data_dir}")
    return 0


def status(data_dir: Path) -> int:
    state = _running_state(data_dir)
    rows = status_rows(state)
    print(
        f"stack on {data_dir}: {state.phase}, supervisor pid {state.supervisor_pid}, gateway {state.gateway_url or '-'}\n"
    )
    print(format_table(rows))
    streams = stream_rows(state)
    if streams:
        print()
        print(format_table(streams, STREAM_HEADER))
    if state.token_command:
        print(f"\na token: {state.token_command}")
    return 0 if state.phase == "running" and all(row[4] == "yes" for row in rows) else EXIT_FAILED


def login(data_dir: Path) -> int:
    """Print a new one-time login link to the running stack's console."""
    state = _running_state(data_dir)
    if not state.console_url:
        raise StackError("this stack runs without the console (up --no-console)")
    print(console_link(state, data_dir))
    return 0


# --- logs and demo


def _log_files(data_dir: Path) -> dict[str, Path]:
    """Instance -> its log file, in start order (Redis, PostgreSQL, the services, the gateway); a stopped stack's too."""
    rank = {
        REDIS: 0,
        POSTGRES: 0,
        CONSOLE: 1,
        **{service: 2 + i for i, service in enumerate(SERVICES)},
        GATEWAY: len(SERVICES) + 2,
    }

    def key(path: Path) -> tuple[int, str]:
        return rank.get(path.stem.rsplit("-", 1)[0], len(rank)), path.stem

    return {path.stem: path for path in sorted((data_dir / "logs").glob("*.log"), key=key)}


def logs(data_dir: Path, names: Sequence[str], follow: bool) -> int:
    files = _log_files(data_dir)
    if not files:
        raise StackError(f"no log files in {data_dir / 'logs'}; has a stack run on {data_dir}?")
    chosen: list[str] = []
    for name in names:
        # An instance (orders-2), or a service for all its instances (orders).
        matches = [name] if name in files else [i for i in files if i.rsplit("-", 1)[0] == name]
        if not matches:
            raise StackError(f"unknown instance {name!r}; valid instances: {', '.join(files)}", EXIT_USAGE)
        chosen += [m for m in matches if m not in chosen]
    selected = [(name, files[name]) for name in (chosen or files)]
    if not follow:
        try:
            print_logs(selected)
        except BrokenPipeError:  # `stack logs | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    follower = LogFollower(selected)
    # Ctrl-C or SIGTERM ends the following (set here: a shell starts a background job with SIGINT ignored).
    signal.signal(signal.SIGINT, _raise_stopped)
    signal.signal(signal.SIGTERM, _raise_stopped)
    follower.start()
    try:
        while True:
            time.sleep(3600)
    except Stopped:
        return 0
    finally:
        follower.stop()


def demo(data_dir: Path, timeout: float) -> int:
    state = read_state(data_dir)
    if state is None or not alive(state.supervisor_pid):
        raise StackError(
            f"no stack is running on {data_dir}; start one first: python -m stack up --from-source --data-dir {data_dir}"
        )
    if state.phase != "running" or not state.gateway_url:
        raise StackError(
            f"the stack on {data_dir} is {state.phase}, not running yet; try again when `up` says it is up"
        )
    try:
        return run_demo(state.gateway_url, data_dir, sys.stdout, timeout=timeout)
    except DemoFailed as exc:
        raise StackError(str(exc)) from None


# --- main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stack", description="The whole flotilla platform on this machine.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--data-dir",
            type=Path,
            default=Path(".data"),
            help="Redis AOF, SQLite files or the PostgreSQL cluster, keys, logs, state (default .data)",
        )

    up_parser = commands.add_parser(
        "up", help="build, start Redis, every service and the gateway; stream logs until Ctrl-C"
    )
    data_dir(up_parser)
    up_parser.add_argument(
        "--from-source", action="store_true", help="run the services from the sources, not their PEX (no build)"
    )
    up_parser.add_argument(
        "--no-build",
        action="store_true",
        help="use the PEX files in --dist-dir as they are (by default, in the build root, `./pants package` them first)",
    )
    up_parser.add_argument(
        "--postgres",
        action="store_true",
        help="run every service on a local PostgreSQL (one database each, kept under the data dir), not SQLite",
    )
    up_parser.add_argument("--replicas", default="", help="instances per service, e.g. orders=2,inventory=2")
    up_parser.add_argument("--port", type=int, default=8000, help="the gateway's port (default 8000)")
    up_parser.add_argument("--console-port", type=int, default=8006, help="the console's port (default 8006)")
    up_parser.add_argument(
        "--no-console", action="store_true", help="run without the console (and without tracing: nothing to send to)"
    )
    up_parser.add_argument(
        "--console-write",
        action="store_true",
        help="let the console's admins act (replay dead letters, hand over pending entries); read-only otherwise",
    )
    up_parser.add_argument(
        "--trace-ratio",
        type=_ratio,
        default=1.0,
        help="the share of requests traced, from 0 to 1 (default 1: every request, to see it in the console)",
    )
    up_parser.add_argument(
        "--dist-dir", type=Path, default=Path("dist"), help="where `./pants package ::` put the PEX files"
    )
    up_parser.add_argument("--ready-timeout", type=float, default=90.0, help="seconds each start may take (default 90)")
    data_dir(commands.add_parser("down", help="stop the running stack: gateway, services, Redis and PostgreSQL"))
    data_dir(commands.add_parser("status", help="the running stack's instances: port, pid, ready, version"))
    data_dir(commands.add_parser("login", help="print a new one-time login link to the running stack's console"))
    logs_parser = commands.add_parser("logs", help="the instances' logs, readable (a running or a stopped stack)")
    data_dir(logs_parser)
    logs_parser.add_argument("--follow", "-f", action="store_true", help="keep printing new lines until Ctrl-C")
    logs_parser.add_argument(
        "instances", nargs="*", metavar="INSTANCE", help="e.g. orders-2, or orders for all (default: all)"
    )
    demo_parser = commands.add_parser(
        "demo", help="seed the catalog and inventory, place three orders through the gateway, print their final states"
    )
    data_dir(demo_parser)
    demo_parser.add_argument("--timeout", type=float, default=60.0, help="seconds the whole demo may take (default 60)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data_dir = args.data_dir.resolve()
    try:
        if args.command == "up":
            options = UpOptions(
                data_dir=data_dir,
                from_source=args.from_source,
                replicas=parse_replicas(args.replicas),
                port=args.port,
                dist_dir=args.dist_dir.resolve(),
                ready_timeout=args.ready_timeout,
                postgres=args.postgres,
                build=not args.no_build,
                console=not args.no_console,
                console_port=args.console_port,
                console_write=args.console_write,
                trace_ratio=args.trace_ratio,
            )
            return up(options)
        if args.command == "down":
            return down(data_dir)
        if args.command == "logs":
            return logs(data_dir, args.instances, args.follow)
        if args.command == "demo":
            return demo(data_dir, args.timeout)
        if args.command == "login":
            return login(data_dir)
        return status(data_dir)
    except StackError as exc:
        print(f"stack {args.command}: {exc}", file=sys.stderr)
        return exc.code
