"""The packaged catalog.pex, run as its own process and called over HTTP, as it is deployed."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess

PEX = Path("src.python.services.catalog/catalog.pex")  # where Pants puts the runtime package


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
    for command in ("serve", "migrate", "settings"):
        assert command in result.stdout


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    result = _run(pex, "serve", env={"PORT": "eighty", "MAX_PAGE_SIZE": "0"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "PORT='eighty'" in result.stderr
    assert "MAX_PAGE_SIZE='0'" in result.stderr


def test_migrate_applies_the_schema_once(pex, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db"}
    first = _run(pex, "migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied  0001_create_products\napplied  0002_add_messaging_tables\n" in first.stdout
    again = _run(pex, "migrate", env=env)
    assert "0 migration(s) applied" in again.stdout
    assert _run(pex, "migrate", "--status", env=env).stdout.splitlines() == [
        "current  0002",
        "head     0002",
        "up to date",
    ]


def test_migrate_downgrades_from_the_pex_and_refuses_an_unknown_revision(pex, tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db"}
    assert _run(pex, "migrate", env=env).returncode == 0
    down = _run(pex, "migrate", "--downgrade", "-1", env=env)
    assert down.returncode == 0, down.stderr
    assert "reverted  0002_add_messaging_tables" in down.stdout
    assert "pending  0002_add_messaging_tables" in _run(pex, "migrate", "--status", env=env).stdout
    unknown = _run(pex, "migrate", "--downgrade", "0042", env=env)
    assert unknown.returncode == 2
    assert "catalog: catalog.migrations: Can't locate revision identified by '0042'" in unknown.stderr


def test_the_pex_serves_the_api_on_its_embedded_defaults_and_stops_cleanly(pex, tmp_path, redis_server):
    port = free_port()
    # No settings but the port and Redis (its events go there): the embedded SQLite default lives
    # in ./.data of the cwd.
    service = ServiceProcess(
        [sys.executable, str(pex), "serve", "--port", str(port)],
        port=port,
        cwd=str(tmp_path),
        env={"REDIS_URL": redis_server.url},
    )
    try:
        service.wait_ready(timeout=90)
        admin = {"x-caller-id": "ops", "x-caller-roles": "admin"}
        status, created = _http(
            "POST",
            f"{service.base_url}/products",
            {"sku": "tea-1", "name": "Tea", "price": {"amount": 450, "currency": "EUR"}},
            admin,
        )
        assert status == 201, created
        assert _http("GET", f"{service.base_url}/products/{created['id']}") == (200, created)
        status, problem = _http("GET", f"{service.base_url}/products/by-sku/none")
        assert status == 404 and problem["status"] == 404
        assert (tmp_path / ".data" / "catalog.db").exists()
    finally:
        exit_code = service.stop(signal.SIGTERM)
    assert exit_code == 0, service.output()
    logs = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "stopping" for entry in logs)


def test_serving_without_redis_fails_at_start_up_naming_the_setting(pex, tmp_path):
    result = _run(pex, "serve", "--port", str(free_port()), env={"REDIS_URL": ""}, cwd=tmp_path)
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
