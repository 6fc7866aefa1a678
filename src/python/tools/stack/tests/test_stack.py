"""`python -m stack up | status | down` as a user runs them: real processes, the services from source."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack.state import alive, read_state

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.waiting import eventually_sync


def _stack(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args, "--data-dir", str(data_dir)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, subprocess.Popen[str]]]:
    data_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "stack", "up", "--from-source", "--replicas", "orders=2", "--port", str(port)]
        + ["--data-dir", str(data_dir)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=open(data_dir / "up.out", "w"),  # the process holds it
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        eventually_sync(
            lambda: up.poll() is not None or ((state := read_state(data_dir)) is not None and state.phase == "running"),
            timeout=180,
            interval=0.2,
            what="the stack running",
        )
        assert up.poll() is None, (data_dir / "up.out").read_text()
        yield data_dir, port, up
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(120)


def test_up_runs_every_instance_behind_the_gateway_and_down_leaves_no_process(running) -> None:
    data_dir, port, up = running
    state = read_state(data_dir)
    assert state is not None
    assert sorted(i.instance for i in state.instances) == sorted(
        ["redis", "catalog-1", "inventory-1", "orders-1", "orders-2", "payments-1", "notifications-1", "gateway-1"]
    )

    assert httpx.get(f"http://127.0.0.1:{port}/api/catalog/products", timeout=10).status_code == 200

    status = _stack("status", data_dir=data_dir)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [
        line.split()
        for line in status.stdout.splitlines()
        if line.split()[:1]
        in (["redis"], ["catalog"], ["inventory"], ["orders"], ["payments"], ["notifications"], ["gateway"])
    ]
    assert len(rows) == 8
    assert all(row[4] == "yes" for row in rows), status.stdout
    streams = {tuple(line.split()[:2]): line.split()[2:] for line in status.stdout.splitlines() if ".events" in line}
    assert ("orders.events", "payments") in streams and ("catalog.events", "inventory") in streams, status.stdout

    second = _stack("up", "--from-source", "--port", str(free_port()), data_dir=data_dir)
    assert second.returncode != 0
    assert "already running" in second.stderr

    output = (data_dir / "up.out").read_text()
    assert f"http://127.0.0.1:{port}" in output and "gateway token --private-key" in output
    assert "orders-2" in output and "INFO    flotilla_kit.app: started" in output  # the logs, readable

    demo = _stack("demo", data_dir=data_dir)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    table = demo.stdout[demo.stdout.index("ORDER ") :].splitlines()[1:4]  # the rows after the table's header
    assert "in stock, card accepted" in table[0] and "confirmed" in table[0] and "placed" in table[0], demo.stdout
    assert "over the stock" in table[1] and "cancelled" in table[1] and "insufficient stock" in table[1]
    assert "card declined" in table[2] and "cancelled" in table[2] and "declined" in table[2], demo.stdout
    assert "UNEXPECTED" not in demo.stdout and "every order reached its expected final state" in demo.stdout

    catalog_logs = _stack("logs", "catalog-1", data_dir=data_dir)
    assert catalog_logs.returncode == 0, catalog_logs.stderr
    lines = catalog_logs.stdout.splitlines()
    assert lines and all(line.startswith("catalog-1 | ") for line in lines), catalog_logs.stdout[:2000]
    assert any("INFO    flotilla_kit.app: started" in line for line in lines)
    assert not any(line.startswith("catalog-1 | {") for line in lines)  # readable, not raw JSON

    down = _stack("down", data_dir=data_dir)
    assert down.returncode == 0, down.stderr
    assert up.wait(30) == 0
    assert [i.instance for i in state.instances if alive(i.pid)] == []
    assert read_state(data_dir) is None
    assert _stack("status", data_dir=data_dir).returncode != 0


def test_an_unknown_service_in_replicas_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    result = _stack("up", "--from-source", "--replicas", "orders=2,shipping=2", data_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown service 'shipping'" in result.stderr
    assert "catalog, inventory, orders, payments, notifications" in result.stderr


def test_a_missing_pex_is_named_with_how_to_build_it(tmp_path: Path) -> None:
    result = _stack("up", "--dist-dir", str(tmp_path / "dist"), "--port", str(free_port()), data_dir=tmp_path)
    assert result.returncode == 1
    assert "src.python.services.catalog/catalog.pex" in result.stderr and "./pants package ::" in result.stderr


def test_a_gateway_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _stack("up", "--from-source", "--port", str(port), data_dir=tmp_path)
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert read_state(tmp_path) is None


def test_demo_without_a_running_stack_says_so(tmp_path: Path) -> None:
    result = _stack("demo", data_dir=tmp_path)
    assert result.returncode == 1
    assert f"no stack is running on {tmp_path}" in result.stderr and "stack up" in result.stderr


def test_logs_of_an_unknown_instance_name_the_valid_ones(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    for instance in ("redis", "catalog-1", "orders-1", "orders-2", "gateway-1"):
        (tmp_path / "logs" / f"{instance}.log").write_text(
            '{"ts": "2026-01-01T00:00:00.000000Z", "level": "INFO", ' '"logger": "x", "msg": "hello"}\n'
        )
    result = _stack("logs", "shipping-1", data_dir=tmp_path)
    assert result.returncode == 2
    assert "unknown instance 'shipping-1'" in result.stderr
    assert "redis, catalog-1, orders-1, orders-2, gateway-1" in result.stderr

    orders = _stack("logs", "orders", data_dir=tmp_path)  # a service: all its instances
    assert orders.returncode == 0, orders.stderr
    assert orders.stdout.splitlines() == [
        "orders-1 | 00:00:00.000 INFO    x: hello",
        "orders-2 | 00:00:00.000 INFO    x: hello",
    ]
