"""The packaged inventory.pex, run as its own process and called over HTTP, as it is deployed."""

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

PEX = Path("src.python.services.inventory/inventory.pex")  # where Pants puts the runtime package


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


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    for name, value in {"content-type": "application/json", **(headers or {})}.items():
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
    result = _run(pex, "serve", env={"PORT": "eighty", "MAX_PAGE_SIZE": "0"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "PORT='eighty'" in result.stderr
    assert "MAX_PAGE_SIZE='0'" in result.stderr


def test_migrate_applies_the_schema_once(pex, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/inventory.db"}
    first = _run(pex, "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_create_stock_and_reservations" in first.stdout
    again = _run(pex, "migrate", env=env)
    assert "0 migration(s) applied" in again.stdout
    assert "up to date" in _run(pex, "migrate", "--status", env=env).stdout


def test_the_pex_serves_the_api_on_its_embedded_database_and_stops_cleanly(pex, tmp_path, redis_server):
    port = free_port()
    # No settings but the port and Redis (for its events): the embedded SQLite default lives in ./.data of the cwd.
    service = ServiceProcess(
        [sys.executable, str(pex), "serve", "--port", str(port)],
        port=port,
        cwd=str(tmp_path),
        env={"REDIS_URL": redis_server.url},
    )
    try:
        service.wait_ready(timeout=90)
        admin = {"x-caller-id": "ops", "x-caller-roles": "admin"}
        product = uuid.uuid4()
        status, level = _http("PUT", f"{service.base_url}/stock/{product}", {"on_hand": 5, "reason": "count"}, admin)
        assert status == 200, level
        assert _http("GET", f"{service.base_url}/stock/{product}") == (200, level)
        status, problem = _http("GET", f"{service.base_url}/stock/{uuid.uuid4()}")
        assert status == 404 and problem["status"] == 404
        assert (tmp_path / ".data" / "inventory.db").exists()
    finally:
        exit_code = service.stop(signal.SIGTERM)
    assert exit_code == 0, service.output()
    logs = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "stopping" for entry in logs)
