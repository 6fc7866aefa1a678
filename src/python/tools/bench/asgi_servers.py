"""Benchmark uvicorn[standard] vs granian (ASGI) serving the same Litestar app.

Run:  python asgi_servers.py            (full run: throughput, start-up, graceful shutdown)
      python asgi_servers.py --quick    (short wrk runs, 1 round; for smoke-testing)

Needs: litestar, msgspec, uvicorn[standard], granian in the running interpreter, and `wrk` on PATH.
The script re-launches itself (`--serve-embedded ...`) to test the in-process/embedded APIs.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, get

from bench import wrk
from bench.wrk import WrkResult

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
MODULE = Path(__file__).stem
APP_FACTORY = f"{MODULE}:create_app"
BENCH_PATH = "/products/42"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Interval between readiness probes: short so start-up timing resolution is ~5 ms.
POLL_INTERVAL_S = 0.005


# --------------------------------------------------------------------------- app


class Product(msgspec.Struct):
    id: int
    name: str
    sku: str
    price_cents: int
    in_stock: bool
    tags: list[str]


@get("/products/{product_id:int}")
async def get_product(product_id: int) -> Product:
    # Built per request so serialisation cost is part of what we measure.
    return Product(
        id=product_id,
        name=f"Widget {product_id}",
        sku=f"WDG-{product_id:06d}",
        price_cents=1999 + product_id,
        in_stock=product_id % 2 == 0,
        tags=["hardware", "widgets"],
    )


@get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    # Exposes the in-flight /slow count so the shutdown test can SIGTERM exactly
    # while a request is being handled, without guessing with sleeps.
    return {"status": "ok", "inflight": request.app.state.inflight}


@get("/slow")
async def slow(request: Request) -> dict[str, str]:
    request.app.state.inflight += 1
    try:
        await asyncio.sleep(1.0)
    finally:
        request.app.state.inflight -= 1
    return {"status": "done"}


def _log_lifespan(event: str) -> Callable[[], None]:
    # Markers on stderr let the harness verify lifespan startup/shutdown really ran.
    def hook() -> None:
        print(f"LIFESPAN:{event}", file=sys.stderr, flush=True)

    return hook


def create_app() -> Litestar:
    """Module-level factory, used by both servers via `--factory`."""
    app = Litestar(
        route_handlers=[get_product, healthz, slow],
        on_startup=[_log_lifespan("startup")],
        on_shutdown=[_log_lifespan("shutdown")],
        debug=False,
    )
    app.state.inflight = 0
    return app


# ------------------------------------------------------------------ server specs


@dataclass(frozen=True)
class ServerSpec:
    name: str
    argv: Callable[[int], list[str]]


def uvicorn_argv(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", APP_FACTORY, "--factory",
        "--host", HOST, "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def granian_argv(port: int) -> list[str]:
    # --runtime-mode st: granian's docs say st is faster with few processes, but `auto`
    # picks mt for the ASGI interface, so it is set explicitly. --http 1 skips HTTP/2
    # detection (wrk speaks HTTP/1.1 only, as would a typical reverse proxy).
    return [
        sys.executable, "-m", "granian", APP_FACTORY, "--factory",
        "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--runtime-mode", "st", "--http", "1", "--no-ws",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def embedded_argv(kind: str) -> Callable[[int], list[str]]:
    def argv(port: int) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--serve-embedded", kind, "--port", str(port)]

    return argv


UVICORN = ServerSpec("uvicorn", uvicorn_argv)
GRANIAN = ServerSpec("granian", granian_argv)
UVICORN_EMBED = ServerSpec("uvicorn (in-process API)", embedded_argv("uvicorn"))
GRANIAN_EMBED = ServerSpec("granian (embed API)", embedded_argv("granian"))


# ------------------------------------------------------------ embedded serving


def serve_embedded(kind: str, port: int) -> None:
    """Start a server from Python code (as a service's CLI entry point would)."""
    import uvloop

    if kind == "uvicorn":
        import uvicorn

        config = uvicorn.Config(
            create_app, factory=True, host=HOST, port=port, loop="uvloop", http="httptools",
            access_log=False, log_level="warning",
        )  # fmt: skip
        # uvicorn.Server installs its own SIGINT/SIGTERM handlers and drains on exit.
        uvicorn.Server(config).run()
        return

    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    async def main() -> None:
        server = Server(
            create_app(), address=HOST, port=port, interface=Interfaces.ASGI, http=HTTPModes.http1, websockets=False,
            log_access=False, log_level=LogLevels.warning,
        )  # fmt: skip
        # The embed server installs no signal handlers: the host owns them.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.stop)
        await server.serve()

    uvloop.run(main())


# ------------------------------------------------------------ process handling

_LIVE: set[subprocess.Popen[bytes]] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch(spec: ServerSpec, log_dir: Path) -> Running:
    port = free_port()
    log_path = log_dir / f"{re.sub(r'[^A-Za-z0-9]+', '_', spec.name)}-{port}.log"
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with log_path.open("wb") as log:
        started = time.perf_counter()
        # New session so a fallback SIGKILL can reach granian's worker child too.
        proc = subprocess.Popen(
            spec.argv(port), cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    _LIVE.add(proc)
    return Running(spec, port, proc, log_path, started)


def http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(srv: Running, deadline_s: float = READY_TIMEOUT_S) -> float:
    """Poll /healthz until 200; return seconds since process start."""
    deadline = time.perf_counter() + deadline_s
    while time.perf_counter() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError(f"{srv.spec.name} exited early ({srv.proc.returncode}):\n{srv.log()[-2000:]}")
        try:
            status, _ = http_get(srv.port, "/healthz", timeout=0.5)
            if status == 200:
                return time.perf_counter() - srv.started_at
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(POLL_INTERVAL_S)
    raise TimeoutError(f"{srv.spec.name} not ready after {deadline_s}s:\n{srv.log()[-2000:]}")


def stop(srv: Running, timeout: float = STOP_TIMEOUT_S) -> tuple[int | None, float]:
    """SIGTERM the server's main process (like a container runtime); SIGKILL the group if it hangs."""
    t0 = time.perf_counter()
    if srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGTERM)
        try:
            srv.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait()
            _LIVE.discard(srv.proc)
            return None, time.perf_counter() - t0
    _LIVE.discard(srv.proc)
    return srv.proc.returncode, time.perf_counter() - t0


@atexit.register
def _cleanup() -> None:
    # Last resort on errors/Ctrl-C: never leave servers holding ports.
    for proc in list(_LIVE):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    _LIVE.clear()


def run_wrk(port: int, conns: int, duration: str) -> WrkResult:
    return wrk.run_wrk(f"http://{HOST}:{port}{BENCH_PATH}", conns, duration)


# ---------------------------------------------------------------- experiments


@dataclass
class Row:
    server: str
    conns: int
    round: int
    res: WrkResult


def throughput(rounds: int, duration: str, warmup: str, log_dir: Path) -> list[Row]:
    rows: list[Row] = []
    for rnd in range(1, rounds + 1):
        # Alternate which server goes first so thermal/noise drift doesn't favour one.
        order = [UVICORN, GRANIAN] if rnd % 2 else [GRANIAN, UVICORN]
        for spec in order:
            srv = launch(spec, log_dir)
            try:
                wait_ready(srv)
                run_wrk(srv.port, 64, warmup)  # warm caches/JIT-free paths, discard
                for conns in (64, 4):
                    res = run_wrk(srv.port, conns, duration)
                    rows.append(Row(spec.name, conns, rnd, res))
                    print(f"  round {rnd} {spec.name:8s} c={conns:<3d} {res.rps:10.0f} req/s "
                          f"p50={res.p50_ms:.2f}ms p99={res.p99_ms:.2f}ms err={res.errors}", flush=True)  # fmt: skip
            finally:
                stop(srv)
    return rows


def startup_times(specs: list[ServerSpec], runs: int, log_dir: Path) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {s.name: [] for s in specs}
    for _ in range(runs):
        for spec in specs:  # interleaved so page-cache warmth is shared fairly
            srv = launch(spec, log_dir)
            try:
                times[spec.name].append(wait_ready(srv))
            finally:
                stop(srv)
    return times


@dataclass
class ShutdownResult:
    server: str
    inflight_status: str
    exit_code: int | None
    stop_s: float
    lifespan_startup: bool
    lifespan_shutdown: bool
    notes: list[str] = field(default_factory=list)


def graceful_shutdown(spec: ServerSpec, log_dir: Path) -> ShutdownResult:
    srv = launch(spec, log_dir)
    result: dict[str, str] = {}

    def client() -> None:
        try:
            status, body = http_get(srv.port, "/slow", timeout=10)
            result["r"] = f"{status} {body.decode()}"
        except Exception as exc:  # - any failure is the finding
            result["r"] = f"FAILED: {type(exc).__name__}: {exc}"

    try:
        wait_ready(srv)
        t = threading.Thread(target=client, daemon=True)
        t.start()
        deadline = time.perf_counter() + 5
        while json.loads(http_get(srv.port, "/healthz")[1])["inflight"] < 1:
            if time.perf_counter() > deadline:
                raise TimeoutError("/slow never became in-flight")
            time.sleep(POLL_INTERVAL_S)
        code, took = stop(srv)
        t.join(15)
    finally:
        stop(srv)
    log = srv.log()
    return ShutdownResult(
        spec.name, result.get("r", "no response"), code, took,
        "LIFESPAN:startup" in log, "LIFESPAN:shutdown" in log,
    )  # fmt: skip


# ------------------------------------------------------------------- report


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("litestar", "msgspec", "uvicorn", "granian", "uvloop", "httptools"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    out["wrk"] = (wrk.stdout or wrk.stderr).splitlines()[0]
    out["python"] = sys.version.split()[0]
    return out


def machine() -> str:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"nproc={os.cpu_count()}, CPU model: {cpu}"


def summary_table(rows: list[Row]) -> str:
    lines = [
        "| server | conns | round | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r.conns * -1, r.server, r.round)):
        lines.append(f"| {r.server} | {r.conns} | {r.round} | {r.res.rps:,.0f} | "
                     f"{r.res.p50_ms:.2f} | {r.res.p99_ms:.2f} | {r.res.errors} |")  # fmt: skip
    lines += ["", "| conns | uvicorn req/s (mean) | granian req/s (mean) | granian/uvicorn req/s "
              "| uvicorn p50/p99 ms | granian p50/p99 ms |", "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for conns in (64, 4):
        agg: dict[str, tuple[float, float, float]] = {}
        for name in (UVICORN.name, GRANIAN.name):
            sel = [r.res for r in rows if r.server == name and r.conns == conns]
            agg[name] = (
                statistics.mean(x.rps for x in sel),
                statistics.mean(x.p50_ms for x in sel),
                statistics.mean(x.p99_ms for x in sel),
            )
        u, g = agg[UVICORN.name], agg[GRANIAN.name]
        lines.append(f"| {conns} | {u[0]:,.0f} | {g[0]:,.0f} | **{g[0] / u[0]:.2f}x** | "
                     f"{u[1]:.2f} / {u[2]:.2f} | {g[1]:.2f} / {g[2]:.2f} |")  # fmt: skip
    return "\n".join(lines)


def startup_table(times: dict[str, list[float]]) -> str:
    lines = ["| server | median ms | min ms | max ms | runs |", "|---|---:|---:|---:|---:|"]
    for name, ts in times.items():
        ms = [t * 1e3 for t in ts]
        lines.append(f"| {name} | {statistics.median(ms):.0f} | {min(ms):.0f} | {max(ms):.0f} | {len(ms)} |")
    return "\n".join(lines)


def shutdown_table(results: list[ShutdownResult]) -> str:
    lines = [
        "| server | in-flight /slow after SIGTERM | exit code | SIGTERM→exit s | lifespan startup | lifespan shutdown |",
        "|---|---|---:|---:|---|---|",
    ]
    for r in results:
        code = "killed (timeout)" if r.exit_code is None else str(r.exit_code)
        lines.append(f"| {r.server} | {r.inflight_status} | {code} | {r.stop_s:.2f} | "
                     f"{'yes' if r.lifespan_startup else 'NO'} | {'yes' if r.lifespan_shutdown else 'NO'} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3s runs, 1 round")
    ap.add_argument("--serve-embedded", choices=["uvicorn", "granian"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve_embedded:
        serve_embedded(args.serve_embedded, args.port)
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get update && apt-get install -y wrk")

    rounds, duration, warmup = (1, "3s", "1s") if args.quick else (2, "10s", "3s")
    with tempfile.TemporaryDirectory(prefix="asgi-bench-") as tmp:
        log_dir = Path(tmp)
        print(f"# {machine()}\n# versions: {versions()}", flush=True)
        print("# throughput (wrk)", flush=True)
        rows = throughput(rounds, duration, warmup, log_dir)
        print("# start-up", flush=True)
        starts = startup_times([UVICORN, GRANIAN, UVICORN_EMBED, GRANIAN_EMBED], 5, log_dir)
        print("# graceful shutdown", flush=True)
        shut = [graceful_shutdown(s, log_dir) for s in (UVICORN, GRANIAN, UVICORN_EMBED, GRANIAN_EMBED)]

    print("\n## Throughput / latency (GET " + BENCH_PATH + ", wrk -t1 --latency)\n")
    print(summary_table(rows))
    print("\n## Start-up: process spawn → first 200 from /healthz (5 runs)\n")
    print(startup_table(starts))
    print("\n## Graceful shutdown: SIGTERM while GET /slow (1 s) is in flight\n")
    print(shutdown_table(shut))
    print("\n## Command lines\n")
    for spec in (UVICORN, GRANIAN, UVICORN_EMBED, GRANIAN_EMBED):
        argv = [Path(a).name if a == sys.executable else a for a in spec.argv(0)]
        print(f"- {spec.name}: `{' '.join(argv).replace(' 0', ' <port>')}`")
    print(f"\n## Environment\n\n- {machine()}")
    for k, v in versions().items():
        print(f"- {k}: {v}")


if __name__ == "__main__":
    main()
