"""A service's runtime PEX, run as it is deployed: its commands, ``serve`` called over HTTP, a clean stop.

In a service's ``tests/test_pex.py`` (whose BUILD gives it ``runtime_package_dependencies`` on the
service's ``pex_binary``, so that Pants builds the PEX into the test's sandbox)::

    from flotilla_kit.testing.pex import http, packaged_pex

    pex = packaged_pex("orders")  # the module's `pex` fixture


    def test_help_lists_the_commands(pex):
        pex.check_help_lists("serve", "migrate", "settings")
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess

COMMAND_TIMEOUT = 120.0  # seconds a command may take: a PEX unpacks itself on its first run
READY_TIMEOUT = 90.0


class Answer(NamedTuple):
    """An HTTP answer: status, decoded JSON body, headers (names in lower case)."""

    status: int
    body: Any
    headers: dict[str, str]


def http(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
    """One JSON request with the standard library (no client the PEX does not need); 4xx/5xx are answers too."""
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    for name, value in {"content-type": "application/json", **(headers or {})}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, json.loads(response.read()), _lower(response.headers.items()))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read()), _lower(error.headers.items()))


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


@dataclass(frozen=True)
class PackagedPex:
    """A built PEX of a service, and the checks every service's PEX must pass."""

    path: Path

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run one command (``--help``, ``migrate``...) to its end, output captured as text; ``env`` adds settings."""
        return subprocess.run(
            [sys.executable, str(self.path), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            timeout=COMMAND_TIMEOUT,
        )

    def migrate(self, *args: str, database: Path) -> subprocess.CompletedProcess[str]:
        """``migrate [args]`` on the SQLite file ``database``."""
        return self.run("migrate", *args, env={"DATABASE_URL": f"sqlite:///{database}"})

    def check_help_lists(self, *commands: str) -> None:
        """``--help`` succeeds and names each of ``commands``."""
        result = self.run("--help")
        assert result.returncode == 0, result.stderr
        missing = [command for command in commands if command not in result.stdout]
        assert not missing, f"--help does not list {missing}:\n{result.stdout}"

    def check_bad_settings_are_named(self, settings: Mapping[str, str], *, cwd: Path) -> None:
        """``serve`` with ``settings`` (each one invalid) exits 2 before serving, naming every one with its value."""
        result = self.run("serve", env=settings, cwd=cwd)
        assert result.returncode == 2, (result.returncode, result.stderr)
        unnamed = [f"{name}={value!r}" for name, value in settings.items() if f"{name}={value!r}" not in result.stderr]
        assert not unnamed, f"start-up did not name {unnamed}:\n{result.stderr}"

    def check_migrations(self, database: Path, revisions: list[str], *, downgrade: bool = True) -> None:
        """``migrate`` applies ``revisions`` (file names, in order) once, then is up to date at the last one;
        with ``downgrade``, ``migrate --downgrade base`` reverts them all."""
        first = self.migrate(database=database)
        assert first.returncode == 0, first.stderr
        applied = "".join(f"applied  {revision}\n" for revision in revisions)
        assert applied in first.stdout, f"expected {applied!r} in:\n{first.stdout}"
        again = self.migrate(database=database)
        assert "0 migration(s) applied" in again.stdout, again.stdout
        head = revisions[-1].split("_", 1)[0]
        status = self.migrate("--status", database=database).stdout
        assert status.splitlines() == [f"current  {head}", f"head     {head}", "up to date"], status
        if downgrade:
            down = self.migrate("--downgrade", "base", database=database)
            assert down.returncode == 0, down.stderr
            for revision in revisions:
                assert f"reverted  {revision}" in down.stdout, down.stdout

    @contextlib.contextmanager
    def serving(self, *, cwd: Path, env: Mapping[str, str]) -> Iterator[ServiceProcess]:
        """``serve`` on a free port in ``cwd`` with ``env`` added, ready to be called.

        On leaving, SIGTERM; when the block passed, the service must then exit 0 having logged that it
        was stopping (a clean stop, as a container runtime asks for one).
        """
        port = free_port()
        service = ServiceProcess(
            [sys.executable, str(self.path), "serve", "--port", str(port)], port=port, cwd=str(cwd), env=env
        )
        try:
            service.wait_ready(timeout=READY_TIMEOUT)
            yield service
        finally:
            exit_code = service.stop(signal.SIGTERM)
        assert exit_code == 0, service.output()
        logs = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
        assert any(entry["msg"] == "stopping" for entry in logs), service.output()


def packaged_pex(service: str) -> Any:
    """A module-scoped fixture: the PEX of ``service`` that Pants built for the test.

    Pants puts a runtime package at ``src.python.services.<service>/<service>.pex`` of the test's
    working directory; the test fails (not skips) when it is missing, since then it would prove nothing.
    """
    where = Path(f"src.python.services.{service}/{service}.pex")

    @pytest.fixture(scope="module")
    def pex() -> PackagedPex:
        if not where.exists():
            pytest.fail(
                f"{where} is missing: run this test through Pants, which builds it (runtime_package_dependencies)"
            )
        return PackagedPex(where.resolve())

    return pex
