"""The kit's runtime as services run it: a real process (CLI, granian, its worker), called over raw sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as redis

from flotilla_discovery.registry import RedisRegistry
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_kit.tests import demo_service

# The demo service starts by module name, as `python -m catalog serve` does.
COMMAND = [sys.executable, "-m", demo_service.__name__, "serve"]
ENV = {"PYTHONPATH": os.pathsep.join(sys.path), "LOG_LEVEL": "INFO"}


def _start(port: int, env: dict[str, str] | None = None) -> ServiceProcess:
    process = ServiceProcess([*COMMAND, "--port", str(port)], port=port, env={**ENV, **(env or {})})
    process.wait_ready(timeout=60)
    return process


def _end(process: ServiceProcess) -> None:
    """Stop the service and anything left of its process group (a worker that outlived its parent)."""
    process.stop()
    try:
        os.killpg(process.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    process = _start(free_port())
    yield process
    _end(process)


def _port(process: ServiceProcess) -> int:
    return int(process.base_url.rsplit(":", 1)[1])


def _exchange(port: int, request: bytes, *, then: str = "wait") -> tuple[int, dict[str, str], bytes]:
    """Send raw ``request``; ``then`` "half-close" shuts our sending side first. Returns the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        if then == "half-close":
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while b"\r\n\r\n" not in received:
            data = sock.recv(65536)
            assert data, f"connection closed without an answer after {received!r}"
            received += data
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        while len(body) < int(headers.get("content-length", "0")):
            data = sock.recv(65536)
            assert data, "connection closed in the middle of the answer"
            body += data
        return int(status_line.split()[1]), headers, body


def _wait_for_log(process: ServiceProcess, since: int, predicate: Callable[[dict[str, object]], bool]) -> dict:
    """The first JSON log line after offset ``since`` that ``predicate`` accepts (polled, with a deadline)."""
    found: list[dict] = []

    def logged() -> bool:
        lines = (json.loads(line) for line in process.output()[since:].splitlines() if line.startswith("{"))
        found.extend(entry for entry in lines if predicate(entry))
        return bool(found)

    eventually_sync(logged, what=f"such a log line in:\n{process.output()[since:]}")
    return found[0]


def _about_the_body(entry: dict[str, object]) -> bool:
    # Today's line ("client disconnected prematurely") or the one the kit writes now.
    text = str(entry.get("msg", ""))
    return "prematurely" in text or "request body" in text


def _assert_no_error_logged(process: ServiceProcess, since: int) -> None:
    """No ERROR line or traceback since offset ``since``: checked once a later request has been
    answered, so that what the server logs after its INFO line about the earlier one is in."""
    assert _exchange(_port(process), b"GET /healthz HTTP/1.1\r\nhost: demo\r\n\r\n")[0] == 200
    later = process.output()[since:]
    assert '"level":"ERROR"' not in later and "Traceback" not in later, later


CHUNKED_HEAD = (
    b"POST /notes HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
)


@pytest.mark.parametrize(
    "request_bytes, then",
    [
        pytest.param(CHUNKED_HEAD + b"zz\r\n{}\r\n0\r\n\r\n", "wait", id="bad-chunk-size"),
        pytest.param(CHUNKED_HEAD + b'40\r\n{"text":', "half-close", id="chunked-cut-short"),
        pytest.param(
            b"POST /notes HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            "half-close",
            id="content-length-cut-short",
        ),
    ],
)
def test_a_malformed_or_cut_short_body_is_a_400_problem_logged_without_a_traceback(service, request_bytes, then):
    since = len(service.output())
    status, headers, body = _exchange(_port(service), request_bytes, then=then)
    assert status == 400, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["status"] == 400 and problem["type"].endswith("/incomplete-body")
    assert problem["request_id"] == headers["x-request-id"]
    entry = _wait_for_log(service, since, _about_the_body)
    assert entry["level"] in ("INFO", "WARNING") and "exc" not in entry
    _assert_no_error_logged(service, since)


def test_a_caller_gone_mid_body_is_one_log_line_without_a_traceback(service):
    since = len(service.output())
    with socket.create_connection(("127.0.0.1", _port(service)), timeout=10) as sock:
        sock.sendall(CHUNKED_HEAD + b'40\r\n{"text":')
    entry = _wait_for_log(service, since, _about_the_body)
    assert entry["level"] in ("INFO", "WARNING") and "exc" not in entry
    _assert_no_error_logged(service, since)  # and the service answers on


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _registered(redis_url: str) -> list[str]:
    async def instances() -> list[str]:
        client = redis.Redis.from_url(redis_url)
        try:
            return [i.instance_id for i in await RedisRegistry(client).instances("demo")]
        finally:
            await client.aclose()

    return asyncio.run(instances())


def test_the_worker_dies_with_the_server_process_on_kill_9():
    redis_server = start_redis()
    port = free_port()
    # A long TTL: only a worker that stops (and deregisters) leaves the registry within the test.
    discovery = {"DISCOVERY": "redis", "REDIS_URL": redis_server.url, "DISCOVERY_TTL_SECONDS": "300"}
    process = _start(port, discovery)
    try:
        me = [f"{socket.gethostname()}-{port}"]
        eventually_sync(lambda: _registered(redis_server.url) == me, timeout=30, what="the service registered")
        os.kill(process.process.pid, signal.SIGKILL)  # the server process only, as `kill -9 $!` does
        process.process.wait(10)
        eventually_sync(
            lambda: not _listens(port) and not _registered(redis_server.url),
            timeout=30,
            what=f"port {port} free and the instance deregistered after kill -9",
        )
    finally:
        _end(process)
        redis_server.close()


def _start_expecting_failure(port: int) -> subprocess.CompletedProcess[str]:
    second = subprocess.Popen(
        [*COMMAND, "--port", str(port)],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(second.pid, signal.SIGKILL)
        second.communicate()
        pytest.fail(f"a second server started on the taken port {port} and kept running")
    return subprocess.CompletedProcess(second.args, second.returncode, out, err)


def test_a_start_on_a_port_a_service_serves_fails_naming_the_port(service):
    port = _port(service)
    result = _start_expecting_failure(port)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_start_on_a_port_another_program_listens_on_fails_naming_the_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _start_expecting_failure(port)
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert "Traceback" not in result.stderr
