"""`python -m stack up | status | down` as a user runs them: real processes, the services from source."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack.node import NodeUnavailable, find_service
from stack.runner import SERVICES
from stack.state import StackState, alive, read_state

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.waiting import eventually_sync

# Absolute: some tests run the tool in another directory.
PYTHONPATH = os.pathsep.join(os.path.abspath(entry) for entry in sys.path)


def _stack(
    *args: str, data_dir: Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args, "--data-dir", str(data_dir)],
        env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


def _start_up(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    """`stack up ARGS` in the background, its output in <data dir>/up.out; returns once it is running."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "up.out", "a") as output:  # the process keeps its own copy of the descriptor
        up = subprocess.Popen(
            [sys.executable, "-m", "stack", "up", *args, "--data-dir", str(data_dir)],
            env={**os.environ, "PYTHONPATH": PYTHONPATH},
            stdout=output,
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
    except BaseException:
        up.kill()  # its children get their signal from the kernel
        raise
    assert up.poll() is None, (data_dir / "up.out").read_text()
    return up


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (PostgreSQL's and the servers' workers are in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _node_instances() -> list[str]:
    """The Node.js service `up` starts when Node.js and its packages are here (stack.node)."""
    try:
        find_service()
    except NodeUnavailable:
        return []
    return ["loyalty-1"]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in raw if b"=" in entry)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, subprocess.Popen[str]]]:
    data_dir = tmp_path_factory.mktemp("stack")
    port = free_port()
    up = _start_up(
        data_dir, "--from-source", "--replicas", "orders=2", "--port", str(port), "--console-port", str(free_port())
    )
    try:
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
        ["redis", "console-1", "catalog-1", "inventory-1", "orders-1", "orders-2", "payments-1", "notifications-1"]
        + ["gateway-1"]
        + _node_instances()
    )

    assert httpx.get(f"http://127.0.0.1:{port}/api/catalog/products", timeout=10).status_code == 200

    status = _stack("status", data_dir=data_dir)
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [
        line.split()
        for line in status.stdout.splitlines()
        if line.split()[:1]
        in (
            ["redis"],
            ["console"],
            ["catalog"],
            ["inventory"],
            ["orders"],
            ["payments"],
            ["notifications"],
            ["gateway"],
        )
    ]
    assert len(rows) == 9
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

    # The console `up` printed has the demo's traces: every service sends its spans to it. Its
    # one-time login link opens a session; `stack login` prints another.
    assert state.console_url
    [link] = re.findall(rf"a one-time login link: ({re.escape(state.console_url)}/login\?token=\S+)", output)
    browser = httpx.Client(timeout=10)
    assert browser.get(f"{state.console_url}/api/traces").status_code == 401
    assert browser.get(link).status_code == 200  # the link's page; its button posts the token
    login = browser.post(f"{state.console_url}/login/link", data={"token": link.split("token=", 1)[1]})
    assert login.status_code == 303
    eventually_sync(
        lambda: bool(browser.get(f"{state.console_url}/api/traces", params={"service": "orders"}).json()["items"]),
        timeout=30,
        what="the orders service's traces in the console",
    )
    another = _stack("login", data_dir=data_dir)
    assert another.returncode == 0 and another.stdout.startswith(f"{state.console_url}/login?token="), another.stderr
    fresh = httpx.post(
        f"{state.console_url}/login/link", data={"token": another.stdout.strip().split("token=", 1)[1]}, timeout=10
    )
    assert fresh.status_code == 303

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


def _fake_build_root(directory: Path, status: int) -> Path:
    """A build root whose `pants` launcher records its arguments and exits with ``status``."""
    (directory / "pants.toml").write_text("")
    launcher = directory / "pants"
    launcher.write_text(f'#!/bin/sh\necho "$@" > "{directory}/pants.args"\necho building >&2\nexit {status}\n')
    launcher.chmod(0o755)
    return directory / "pants.args"


def test_up_in_the_build_root_packages_the_services_with_pants_and_stops_when_that_fails(tmp_path: Path) -> None:
    calls = _fake_build_root(tmp_path, status=3)
    dist = tmp_path / "dist"
    result = _stack("up", "--dist-dir", str(dist), "--port", str(free_port()), data_dir=tmp_path / "data", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "building the services failed" in result.stderr and "exited with status 3" in result.stderr
    assert "building\n" in result.stderr  # Pants' own output is shown
    assert "Traceback" not in result.stderr
    arguments = calls.read_text().split()
    assert arguments[:3] == ["--concurrent", f"--pants-distdir={dist}", "package"]
    assert sorted(arguments[3:]) == sorted(
        f"src/python/services/{name}:{name}" for name in (*SERVICES, "gateway", "console")
    )  # each service's pex_binary
    assert read_state(tmp_path / "data") is None  # nothing was started


def test_a_missing_pex_with_no_build_is_named_with_how_to_build_it(tmp_path: Path) -> None:
    calls = _fake_build_root(tmp_path, status=0)
    result = _stack(
        "up", "--no-build", "--dist-dir", str(tmp_path / "dist"), "--port", str(free_port()),
        data_dir=tmp_path / "data", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "src.python.services.catalog/catalog.pex" in result.stderr and "./pants package ::" in result.stderr
    assert not calls.exists()  # --no-build: Pants was not run


def test_postgres_without_its_server_binaries_says_to_install_them(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = _stack(
        "up", "--postgres", "--from-source", "--port", str(free_port()),
        data_dir=tmp_path / "data", env={"PG_BINDIR": str(empty)},
    )  # fmt: skip
    assert result.returncode == 1
    assert f"PG_BINDIR={empty} has no initdb" in result.stderr
    assert "install the `postgresql` package" in result.stderr and "Traceback" not in result.stderr
    assert read_state(tmp_path / "data") is None  # refused before Redis or anything else started


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


def _instance(state: StackState, name: str) -> int:
    return next(x.pid for x in state.instances if x.instance == name)


def test_postgres_stack_serves_the_demo_and_a_killed_up_leaves_no_process_and_its_data_for_the_next(
    tmp_path: Path,
) -> None:
    # tmp_path is under a mode-700 directory: as root, the cluster goes where the postgres user can
    # reach it, linked from the data dir, and the next `up` must find it there again.
    data_dir = tmp_path / "stack"
    port = free_port()
    up = _start_up(data_dir, "--postgres", "--from-source", "--no-console", "--port", str(port))
    processes: set[int] = set()
    try:
        state = read_state(data_dir)
        assert state is not None and state.postgres is not None
        assert [x.instance for x in state.instances][:2] == ["redis", "postgres"]  # started first
        postgres = next(x for x in state.instances if x.service == "postgres")
        cluster = Path(state.postgres.directory)
        assert cluster == (data_dir / "postgres").resolve()
        for record in state.instances:
            if record.service in (*SERVICES, "gateway"):
                assert httpx.get(f"http://127.0.0.1:{record.port}/readyz", timeout=10).status_code == 200
            if record.service in SERVICES:
                url = _environ(record.pid)["DATABASE_URL"]
                assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/{record.service}"

        status = _stack("status", data_dir=data_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        assert [line.split()[4] for line in status.stdout.splitlines() if line.startswith("postgres ")] == ["yes"]

        demo = _stack("demo", data_dir=data_dir)
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "every order reached its expected final state" in demo.stdout
        skus = {
            p["sku"] for p in httpx.get(f"http://127.0.0.1:{port}/api/catalog/products", timeout=10).json()["items"]
        }
        assert skus

        # kill -9 of `up`: the kernel signals its children, which stop; nothing is left.
        processes = _descendants(up.pid)
        assert {x.pid for x in state.instances} <= processes
        up.send_signal(signal.SIGKILL)
        up.wait(10)
        eventually_sync(
            lambda: not any(alive(pid) for pid in processes), timeout=60, interval=0.2, what="every process gone"
        )
        down = _stack("down", data_dir=data_dir)
        assert down.returncode == 1 and f"no stack is running on {data_dir}" in down.stderr, down.stderr
        assert read_state(data_dir) is None  # the killed `up`'s state file is cleaned up

        # A new `up` on the same data dir: same cluster, the first run's data still there.
        up = _start_up(data_dir, "--postgres", "--from-source", "--no-console", "--port", str(port))
        state = read_state(data_dir)
        assert state is not None and state.postgres is not None and Path(state.postgres.directory) == cluster
        again = httpx.get(f"http://127.0.0.1:{port}/api/catalog/products", timeout=10).json()["items"]
        assert skus <= {p["sku"] for p in again}
        processes = _descendants(up.pid)
        down = _stack("down", data_dir=data_dir)
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0
        assert sorted(pid for pid in processes if alive(pid)) == []  # PostgreSQL's processes included
        assert read_state(data_dir) is None
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(120)
        eventually_sync(lambda: not any(alive(pid) for pid in processes), timeout=60, what="every process gone")
        link = data_dir / "postgres"
        if link.is_symlink():  # the cluster kept outside the data dir
            shutil.rmtree(link.resolve(), ignore_errors=True)
