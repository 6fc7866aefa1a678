"""The packaged orders.pex, run as its own process and called over HTTP, as it is deployed."""

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

PEX = Path("src.python.services.orders/orders.pex")  # where Pants puts the runtime package


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
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), {k.lower(): v for k, v in error.headers.items()}


def test_help_lists_the_commands(pex):
    result = _run(pex, "--help")
    assert result.returncode == 0
    for command in ("serve", "migrate", "settings"):
        assert command in result.stdout


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    result = _run(pex, "serve", env={"PORT": "eighty", "SAGA_STEP_TIMEOUT_SECONDS": "0"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "PORT='eighty'" in result.stderr
    assert "SAGA_STEP_TIMEOUT_SECONDS='0'" in result.stderr


def test_migrate_applies_the_schema_once_and_downgrades(pex, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/orders.db"}
    first = _run(pex, "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_create_orders" in first.stdout
    assert "0 migration(s) applied" in _run(pex, "migrate", env=env).stdout
    assert _run(pex, "migrate", "--status", env=env).stdout.splitlines() == [
        "current  0001",
        "head     0001",
        "up to date",
    ]
    down = _run(pex, "migrate", "--downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "reverted  0001_create_orders" in down.stdout


def test_the_pex_serves_the_api_on_its_embedded_defaults_and_stops_cleanly(pex, tmp_path, redis_server):
    port = free_port()
    # No settings but the port and Redis (the saga's events): the embedded SQLite default lives in
    # ./.data of the cwd. No catalog is known, so an order cannot be priced: 503, retry later.
    service = ServiceProcess(
        [sys.executable, str(pex), "serve", "--port", str(port)],
        port=port,
        cwd=str(tmp_path),
        env={"REDIS_URL": redis_server.url},
    )
    alice = {"x-caller-id": "alice"}
    try:
        service.wait_ready(timeout=90)
        status, page, _ = _http("GET", f"{service.base_url}/orders", headers=alice)
        assert (status, page) == (200, {"items": [], "next_cursor": None})
        body = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}
        status, problem, headers = _http(
            "POST", f"{service.base_url}/orders", body, {**alice, "Idempotency-Key": "k-1"}
        )
        assert status == 503 and problem["status"] == 503 and "catalog" in problem["detail"]
        assert int(headers["retry-after"]) >= 1
        assert (tmp_path / ".data" / "orders.db").exists()
    finally:
        exit_code = service.stop(signal.SIGTERM)
    assert exit_code == 0, service.output()
    logs = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "stopping" for entry in logs)


def test_serving_without_redis_fails_at_start_up_naming_the_setting(pex, tmp_path):
    result = _run(pex, "serve", "--port", str(free_port()), env={"REDIS_URL": ""}, cwd=tmp_path)
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
