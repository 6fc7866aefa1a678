"""Where `stack up` finds the Node.js loyalty service, and what it says when it cannot run it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from stack.cli import Supervisor, UpOptions
from stack.node import LOYALTY, NodeUnavailable, find_service


def _service_without_packages(root: Path) -> Path:
    directory = root / "services" / LOYALTY
    directory.mkdir(parents=True)
    (directory / "main.js").write_text("")
    return directory


def test_up_without_node_says_so_in_one_line_and_starts_nothing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node there
    options = UpOptions(
        data_dir=tmp_path, from_source=True, replicas={}, port=0, dist_dir=tmp_path, ready_timeout=1, console=False
    )
    supervisor = Supervisor(options)

    supervisor.start_node_services()

    lines = capsys.readouterr().err.splitlines()
    assert lines == ["  loyalty (Node.js) not started: node is not on PATH (install Node.js 20 or later)"]
    assert supervisor.services == []


def test_a_service_without_its_installed_packages_names_them_and_npm_ci(tmp_path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH: the packages are checked after node")
    directory = _service_without_packages(tmp_path)

    with pytest.raises(NodeUnavailable) as raised:
        find_service(root=tmp_path)

    assert "ioredis, ajv, ajv-formats missing" in str(raised.value)
    assert f"run `npm ci` in {directory}" in str(raised.value)


def test_a_js_root_without_the_service_says_where_it_looked(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FLOTILLA_JS_ROOT", str(tmp_path))

    with pytest.raises(NodeUnavailable, match=f"no Node.js service at {tmp_path}/services/loyalty"):
        find_service()
