"""Run a service as a real process and wait until it is ready, for end-to-end tests."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from flotilla_kit.testing.ports import free_port

_PR_SET_PDEATHSIG = 1
# Looked up once here: loading libc in the forked child could wait on a lock another thread held.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM when the thread that started it
    ends (the test process's main thread, so: when the test run dies, by a timeout or Ctrl-C twice),
    so an interrupted run leaves no server behind. Start processes from a thread that outlives them."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ServiceProcess:
    def __init__(
        self, command: Sequence[str], *, port: int, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        # A file, not a pipe: a pipe nobody reads fills up and blocks a chatty service.
        self._log = tempfile.TemporaryFile(mode="w+")
        # Its own process group: a kill -9 must take the server's worker processes down with it.
        self.process = subprocess.Popen(
            list(command),
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def wait_ready(self, timeout: float = 60.0, path: str = "/readyz") -> float:
        """Poll ``path`` until it answers 200; return the seconds it took. Raises with the log on failure."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode} before ready:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"service not ready after {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit code (kill after ``timeout``).

        SIGKILL goes to the whole process group, like a crashed container; other signals go to the
        main process, which stops its workers itself.
        """
        if self.process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        """Everything the process has printed so far."""
        self._log.seek(0)
        return self._log.read()


def serve_asgi(
    target: str, port: int, *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> ServiceProcess:
    """Serve the ASGI app factory ``target`` ("module:factory") as services are served: granian,
    one worker, uvloop, single-threaded runtime, HTTP/1. Ready once ``/healthz`` answers."""
    command = [
        sys.executable, "-m", "granian", target, "--factory", "--interface", "asgi",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--loop", "uvloop",
        "--runtime-mode", "st", "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = ServiceProcess(command, port=port, env=env, cwd=cwd)
    process.wait_ready(timeout=60, path="/healthz")
    return process


@contextlib.contextmanager
def running_service(
    module: str,
    *,
    redis_url: str,
    data_dir: Path | str,
    services: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[ServiceProcess]:
    """``python -m <module> serve`` as its own process on a free port, from the test's own sources; ready.

    Its database is a SQLite file ``<module>.db`` in ``data_dir``, its events go to ``redis_url``;
    ``services`` (name -> base URL) are the services it calls, found by static discovery; ``env``
    adds or overrides settings. On leaving, the process is stopped (SIGTERM) and whatever is left of
    its process group is killed, so a worker that outlived its parent cannot hold the port.
    """
    port = free_port()
    settings = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{data_dir}/{module}.db",
        "REDIS_URL": redis_url,
        **(
            {"DISCOVERY": "static", "SERVICE_URLS": ";".join(f"{name}={url}" for name, url in services.items())}
            if services
            else {}
        ),
        **(env or {}),
    }
    process = ServiceProcess([sys.executable, "-m", module, "serve", "--port", str(port)], port=port, env=settings)
    try:
        process.wait_ready(timeout=timeout)
        yield process
    finally:
        process.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.process.pid, signal.SIGKILL)
