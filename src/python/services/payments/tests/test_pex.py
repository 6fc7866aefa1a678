"""The packaged payments.pex, run as its own process, fed events and called over HTTP, as it is deployed."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.waiting import eventually_sync
from payments.tests.conftest import ADMIN, publish, requested

PEX = Path("src.python.services.payments/payments.pex")  # where Pants puts the runtime package


@pytest.fixture(scope="module")
def pex() -> Path:
    if not PEX.exists():
        pytest.fail(f"{PEX} is missing: run this test through Pants, which builds it (runtime_package_dependencies)")
    return PEX.resolve()


def _run(pex: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    return subprocess.run(
        [sys.executable, str(pex), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


def _get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_help_lists_the_commands(pex):
    result = _run(pex, "--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "settings", "dlq"):
        assert command in result.stdout


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    result = _run(pex, "serve", env={"PROVIDER_FAILURE_RATE": "2", "DECLINE_ABOVE": "-1"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "PROVIDER_FAILURE_RATE='2'" in result.stderr
    assert "DECLINE_ABOVE='-1'" in result.stderr


def test_migrate_applies_the_schema_once_and_downgrades(pex, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/payments.db"}
    first = _run(pex, "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_create_payments" in first.stdout
    assert "0 migration(s) applied" in _run(pex, "migrate", env=env).stdout
    assert "up to date" in _run(pex, "migrate", "--status", env=env).stdout
    down = _run(pex, "migrate", "--downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "reverted  0001_create_payments" in down.stdout


async def test_the_pex_captures_a_requested_payment_on_its_embedded_defaults_and_stops_cleanly(
    pex, tmp_path, redis, redis_server
):
    port = free_port()
    # Only Redis and the port: the embedded SQLite default lives in ./.data of the cwd.
    service = ServiceProcess(
        [sys.executable, str(pex), "serve", "--port", str(port)],
        port=port,
        env={"REDIS_URL": redis_server.url},
        cwd=str(tmp_path),
    )
    try:
        service.wait_ready(timeout=90)
        order_id = uuid.uuid4()
        await publish(redis, requested(order_id, amount=700))
        url = f"{service.base_url}/payments/{order_id}"
        eventually_sync(lambda: _get(url, ADMIN)[0] == 200, timeout=30, what="the payment captured")
        status, payment = _get(url, ADMIN)
        assert payment["status"] == "captured" and payment["amount"] == {"amount": 700, "currency": "EUR"}
        assert _get(url)[0] == 401
        assert (tmp_path / ".data" / "payments.db").exists()
    finally:
        exit_code = service.stop(signal.SIGTERM)
    assert exit_code == 0, service.output()
    logs = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "stopping" for entry in logs)
