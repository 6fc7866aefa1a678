"""Orders through the saga on the stack a user runs: orders/s, time to a final state, CPU per order.

Run:  ./pants run src/python/tools/bench:orders -- --seconds 15 [--configs sqlite-x1,sqlite-x2] [--concurrency 4,16,32]
(the postgres configurations need the PostgreSQL server binaries: apt-get install postgresql)

For each configuration the bench starts the platform with the stack tool as a subprocess, the way a
user does (``python -m stack up --from-source --data-dir <fresh tmp dir> --port <free port>
--replicas ... [--postgres]``, see stack/cli.py): Redis with AOF, catalog, inventory, orders,
payments, notifications, the gateway with JWTs and its default rate limits. It waits until the
stack's state file says it is running, seeds products with ample stock through the gateway as an
admin (JWTs signed with the key the stack wrote), then measures:

1. saturation: closed loops of customers (each places an order through the gateway and waits for
   its final event), at rising concurrency; orders/s reaching a final state, and the CPU
   milliseconds per order of each service (from /proc, every instance's process tree as listed in
   the state file, over the step with the highest rate);
2. latency at half of saturation: orders placed at a fixed pace (open loop), time from sending
   ``POST /orders`` to the order's final entry being read from ``orders.events``: p50 and p99;
3. twenty orders one at a time: one saga's cost without queueing.

and stops it with ``python -m stack down`` (killing what is left if that fails). Final states are
read from the orders stream (XREAD by the bench itself), not by polling the API, so measuring adds
no load to the services.

Configurations (``--configs``, default all): sqlite-x1 (one instance of each service), sqlite-x2
(two of each consumer service: inventory, payments, notifications, and orders), postgres-x1 and
postgres-x2 (the same with ``--postgres``: every service on a local PostgreSQL). The table at the
end gives each one's ratios to sqlite-x1 measured in the same run: the machine is shared and
absolute figures drift between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import redis.asyncio as aioredis
from stack.demo import DemoFailed, Gateway, sign_token
from stack.state import StackState, alive, read_state

from bench.cpu import ProcessTrees
from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.waiting import eventually_sync
from flotilla_streams.envelope import ENVELOPE_FIELD, decode

_FINAL_TYPES = {"orders.OrderConfirmed": "confirmed", "orders.OrderCancelled": "cancelled"}
_order_id = msgspec.json.Decoder(dict[str, object])
_PR_SET_PDEATHSIG = 1
# Looked up once here: loading libc in the forked child could wait on a lock another thread held.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_CONSUMERS_X2 = "inventory=2,payments=2,notifications=2,orders=2"


@dataclass(frozen=True)
class Config:
    """One way to run the stack: the arguments of ``stack up`` that differ."""

    name: str
    replicas: str  # --replicas
    postgres: bool  # --postgres

    def up_arguments(self) -> list[str]:
        return (["--replicas", self.replicas] if self.replicas else []) + (["--postgres"] if self.postgres else [])


CONFIGS = {
    config.name: config
    for config in (
        Config("sqlite-x1", "", postgres=False),
        Config("sqlite-x2", _CONSUMERS_X2, postgres=False),
        Config("postgres-x1", "", postgres=True),
        Config("postgres-x2", _CONSUMERS_X2, postgres=True),
    )
}
BASELINE = "sqlite-x1"


class BenchError(Exception):
    """The stack did not start or stop as it should; the message is for the user."""


@dataclass
class Outcomes:
    """Final events seen on the orders stream: order id -> (state, monotonic time seen)."""

    seen: dict[str, tuple[str, float]] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[str]] = field(default_factory=dict)

    def wait(self, order_id: str) -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        if order_id in self.seen:
            future.set_result(self.seen[order_id][0])
        else:
            self.waiters[order_id] = future
        return future


async def _watch(redis_url: str, outcomes: Outcomes, stop: asyncio.Event) -> None:
    client = aioredis.Redis.from_url(redis_url)
    last = "$"
    try:
        while not stop.is_set():
            batches = await client.xread({ORDERS_EVENTS: last}, count=1000, block=200)
            now = time.monotonic()
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    last = entry_id
                    envelope = decode(fields[ENVELOPE_FIELD])
                    state = _FINAL_TYPES.get(envelope.type)
                    if state is None:
                        continue
                    order_id = str(_order_id.decode(envelope.payload)["order_id"])
                    outcomes.seen[order_id] = (state, now)
                    waiter = outcomes.waiters.pop(order_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(state)
    finally:
        await client.aclose()


# --- the stack, started and stopped with the stack tool


@dataclass
class Stack:
    """A stack that ``stack up`` runs for the bench: where to reach it and which processes it is."""

    data_dir: Path
    state: StackState  # as the state file said once the stack was running

    @property
    def gateway_url(self) -> str:
        return self.state.gateway_url

    @property
    def redis_url(self) -> str:
        redis_port = next(record.port for record in self.state.instances if record.service == "redis")
        return f"redis://127.0.0.1:{redis_port}/0"

    def token(self, *roles: str, sub: str) -> str:
        """A JWT the gateway accepts, signed with the key ``up`` wrote into the data dir."""
        return sign_token(self.data_dir / "jwt-private.pem", sub=sub, roles=roles)


def _stack_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "stack", *arguments]


def _stack_env() -> dict[str, str]:
    # `up --from-source` hands its own sys.path on to the services; from this one it finds them
    # (the repo's source roots, or the PEX's venv under `pants run`).
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def _die_with_bench() -> None:
    # Runs in `up` before exec: if the bench dies, `up` gets SIGTERM and stops the stack in order.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(f"  {line}" for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "  (no output)"


@contextlib.contextmanager
def running_stack(config: Config, directory: Path, timeout: float = 300.0) -> Iterator[Stack]:
    """``stack up`` with ``config`` on a fresh data dir under ``directory``, until it runs; ``down`` on leaving.

    Raises BenchError (with the end of ``up``'s output) when ``up`` exits or is not running after
    ``timeout`` seconds. On leaving, if ``down`` fails or ``up`` is still there after it, ``up``'s
    process group and every instance it listed are killed: nothing is left running.
    """
    data_dir = directory / "stack"
    output = directory / "up.log"
    # With --postgres as root, the server runs as `postgres`: let it reach its cluster under the
    # data dir (a mkdtemp is mode 700), so the cluster goes when the directory does.
    directory.chmod(0o755)  # up's progress, summary and the services' logs it streams
    # Without the console, so without tracing: the shop's own cost (the tracing cost has its own benches).
    command = _stack_command(
        "up", "--from-source", "--no-console", "--data-dir", str(data_dir), "--port", str(free_port()),
        *config.up_arguments(),
    )  # fmt: skip
    with open(output, "wb") as log:
        up = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_stack_env(),
            start_new_session=True,  # a group of its own, to kill as one if `down` fails
            preexec_fn=_die_with_bench,
        )
    seen: StackState | None = None
    try:
        deadline = time.monotonic() + timeout
        while seen is None or seen.phase != "running":
            if up.poll() is not None:
                raise BenchError(f"`{' '.join(command)}` exited with {up.returncode}:\n{_tail(output)}")
            if time.monotonic() > deadline:
                raise BenchError(f"the stack on {data_dir} was not running after {timeout:g}s:\n{_tail(output)}")
            time.sleep(0.2)  # polling the state file, with the deadline above
            seen = read_state(data_dir) or seen
        yield Stack(data_dir, seen)
    finally:
        _stop_stack(up, data_dir, seen)
        cluster = data_dir / "postgres"
        if cluster.is_symlink():  # `up` kept it elsewhere after all (stack/cli.py): a bench run keeps nothing
            shutil.rmtree(cluster.resolve(), ignore_errors=True)


def _stop_stack(up: subprocess.Popen[bytes], data_dir: Path, seen: StackState | None) -> None:
    """``stack down``; then kill whatever of the stack is still alive (up's group, the listed instances)."""
    latest = read_state(data_dir)  # an `up` that failed while starting may have listed more
    listed = [*(seen.instances if seen else []), *(latest.instances if latest else [])]
    instances = list({record.pid: record for record in listed}.values())
    if up.poll() is None:
        try:
            down = subprocess.run(
                _stack_command("down", "--data-dir", str(data_dir)),
                env=_stack_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=180,
            )
            if down.returncode != 0:
                print(f"  stack down failed ({down.returncode}): {down.stderr.decode(errors='replace')}", flush=True)
        except subprocess.TimeoutExpired:
            print("  stack down did not finish within 180 s", flush=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.wait(30)
    leftovers = [record for record in instances if alive(record.pid)]
    if up.poll() is None or leftovers:
        names = ", ".join(f"{record.instance} ({record.pid})" for record in leftovers)
        print(f"  killing what is left of the stack: up ({up.pid}) {names}", flush=True)
        for pid in [up.pid, *(record.pid for record in leftovers)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # every instance is its own process group (see stack/cli.py)
    up.wait()


# --- load


class Shop:
    def __init__(self, stack: Stack, products: list[str]) -> None:
        self.stack = stack
        self.products = products
        self.outcomes = Outcomes()
        self.session: aiohttp.ClientSession | None = None
        self.tokens = [stack.token("customer", sub=f"bench-{i}") for i in range(64)]

    async def place(self, n: int) -> tuple[str, float]:
        """Place one order; returns its id and the monotonic time the request was sent."""
        assert self.session is not None
        body = {"lines": [{"product_id": self.products[n % len(self.products)], "quantity": 1}]}
        headers = {"authorization": f"Bearer {self.tokens[n % len(self.tokens)]}", "idempotency-key": uuid.uuid4().hex}
        sent = time.monotonic()
        async with self.session.post(f"{self.stack.gateway_url}/api/orders", json=body, headers=headers) as response:
            answer = await response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /api/orders answered {response.status}: {answer[:300]!r}")
        return str(_order_id.decode(answer)["id"]), sent

    async def place_and_wait(self, n: int) -> float:
        order_id, sent = await self.place(n)
        await asyncio.wait_for(self.outcomes.wait(order_id), 60)
        return self.outcomes.seen[order_id][1] - sent


@dataclass
class Result:
    single: list[float]  # latencies of orders placed one at a time
    saturation: list[tuple[int, float, float, float]]  # (customers, orders/s, p50 s, p99 s)
    rate: float  # the highest orders/s
    concurrency: int  # the customers it took
    cpu_ms: dict[str, float]  # per service, per order, at that rate
    half: list[float]  # latencies at half that rate, paced
    final_states: dict[str, int]  # orders by final state, over the whole measurement


def _cpu_by_service(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each service's instances, whole process trees (a server runs its app in a child).

    Every instance the state file lists counts (Redis too, and PostgreSQL if it is listed), and
    ``stack`` is the supervisor itself (``up``, which formats and prints the services' logs).
    """
    processes = ProcessTrees()
    totals = {"stack": processes.cpu.get(stack.state.supervisor_pid, 0.0)}
    for record in stack.state.instances:
        totals[record.service] = totals.get(record.service, 0.0) + processes.tree(record.pid)
    return totals


async def _closed_loop(shop: Shop, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """``concurrency`` customers each placing orders one after another; returns orders/s and latencies."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    counter = iter(range(10**9))

    async def customer() -> None:
        while time.monotonic() < deadline:
            latencies.append(await shop.place_and_wait(next(counter)))

    started = time.monotonic()
    await asyncio.gather(*(customer() for _ in range(concurrency)))
    return len(latencies) / (time.monotonic() - started), latencies


async def _paced(shop: Shop, rate: float, seconds: float) -> list[float]:
    """Orders sent at ``rate`` per second whatever the answers (open loop); their latencies."""
    interval = 1 / rate
    tasks = []
    start = time.monotonic()
    for n in range(int(rate * seconds)):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(shop.place_and_wait(n)))
    return list(await asyncio.gather(*tasks))


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seed(stack: Stack, count: int) -> list[str]:
    """``count`` products in the catalog, each with ample stock, through the gateway as an admin."""
    run = uuid.uuid4().hex[:8].upper()  # SKUs unique even on a database that outlives the data dir
    # The demo's client: it waits out the gateway's rate limit (429) instead of failing.
    admin = Gateway(stack.gateway_url, stack.token("admin", sub="bench-admin"), time.monotonic() + 120)
    try:
        products = []
        for i in range(count):
            body = {"sku": f"BENCH-{run}-{i}", "name": f"Bench tea {i}", "price": {"amount": 450, "currency": "EUR"}}
            products.append(str(admin.expect("POST", "/api/catalog/products", 201, json=body)["id"]))
        for product in products:  # all created first: fewer polls while inventory catches up
            path = f"/api/inventory/stock/{product}"

            def stock_row_exists(path: str = path) -> bool:
                return bool(admin.call("GET", path).status_code == 200)

            eventually_sync(  # inventory makes the stock row from the catalog's event
                stock_row_exists,
                timeout=30,
                interval=0.1,
                what=f"inventory's stock row of {product}",
            )
            admin.expect("PUT", path, 200, json={"on_hand": 10**8, "reason": "bench"})
    except (DemoFailed, TimeoutError) as exc:
        raise BenchError(f"seeding through {stack.gateway_url}: {exc}") from None
    finally:
        admin.close()
    return products


async def _measure(stack: Stack, products: list[str], seconds: float, levels: list[int]) -> Result:
    shop = Shop(stack, products)
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(stack.redis_url, shop.outcomes, stop))
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as shop.session:
        try:
            await shop.place_and_wait(0)  # warm up every hop
            single = [await shop.place_and_wait(n) for n in range(20)]
            best: tuple[float, int, dict[str, float]] = (0.0, 0, {})
            saturation = []
            for concurrency in levels:
                before = _cpu_by_service(stack)
                rate, latencies = await _closed_loop(shop, concurrency, seconds)
                after = _cpu_by_service(stack)
                orders = len(latencies)
                cpu = {service: 1000 * (after[service] - before[service]) / orders for service in after}
                saturation.append((concurrency, rate, _ms(latencies, 0.5) / 1000, _ms(latencies, 0.99) / 1000))
                print(f"  c{concurrency}: {rate:.0f} orders/s, p50 {_ms(latencies, 0.5):.1f} ms", flush=True)
                if rate > best[0]:
                    best = (rate, concurrency, cpu)
            paced = await _paced(shop, best[0] / 2, seconds)
        finally:
            stop.set()
            await watcher
    rate, concurrency, cpu = best
    final_states: dict[str, int] = {}
    for state, _seen in shop.outcomes.seen.values():
        final_states[state] = final_states.get(state, 0) + 1
    return Result(single, saturation, rate, concurrency, cpu, paced, final_states)


def _configs(text: str) -> list[Config]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown or not names:
        raise ValueError(
            f"--configs: unknown configuration {', '.join(unknown) or text!r}; valid: {', '.join(CONFIGS)}"
        )
    return [CONFIGS[name] for name in dict.fromkeys(names)]


def _levels(text: str) -> list[int]:
    try:
        levels = [int(c) for c in text.split(",")]
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise ValueError(f"--concurrency: {text!r}: expected whole numbers >= 1, e.g. 4,16,32")
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load step (default 15)")
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"configurations to measure, in order (default {','.join(CONFIGS)})",
    )
    parser.add_argument(
        "--concurrency", default="4,16,32,64", help="closed-loop customers per step (default 4,16,32,64)"
    )
    args = parser.parse_args()
    try:
        configs, levels = _configs(args.configs), _levels(args.concurrency)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2
    if args.seconds <= 0:
        parser.error(f"--seconds: {args.seconds:g}: must be positive")
    results: dict[str, Result] = {}
    loads: dict[str, float] = {}
    try:
        for config in configs:
            loads[config.name] = os.getloadavg()[0]
            print(f"{config.name}: stack up {' '.join(config.up_arguments())}".rstrip(), flush=True)
            with tempfile.TemporaryDirectory(prefix="orders-bench-") as directory:
                with running_stack(config, Path(directory)) as stack:
                    products = _seed(stack, 20)
                    results[config.name] = asyncio.run(_measure(stack, products, args.seconds, levels))
    except KeyboardInterrupt:  # the stack was stopped on the way out (running_stack)
        print("orders bench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BenchError as exc:
        print(f"orders bench: {exc}", file=sys.stderr)
        if not results:
            raise SystemExit(1) from None
        print("(reporting what was measured before it)", file=sys.stderr)
    _report(results, loads, args)


def _report(results: dict[str, Result], loads: dict[str, float], args: argparse.Namespace) -> None:
    base_name = BASELINE if BASELINE in results else next(iter(results))
    base = results[base_name]
    print(
        f"\nmachine: nproc {os.cpu_count()}, python {platform.python_version()}; each service one granian worker,"
        f" started by `stack up --from-source`; {args.seconds:g} s per step, customers {args.concurrency};"
        " load average before each: " + ", ".join(f"{name} {load:.2f}" for name, load in loads.items()) + "\n"
    )
    print(f"ratios against {base_name} of this run\n")
    print(
        "| configuration | orders/s at saturation (customers) | ratio | POST to final state at half load: p50 / p99 ms"
        " | ratio p50 / p99 | one order alone: p50 / p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        p50, p99 = _ms(r.half, 0.5), _ms(r.half, 0.99)
        print(
            f"| {name} | {r.rate:.0f} ({r.concurrency}) | {r.rate / base.rate:.2f}"
            f" | {p50:.1f} / {p99:.1f} at {r.rate / 2:.0f}/s"
            f" | {p50 / _ms(base.half, 0.5):.2f} / {p99 / _ms(base.half, 0.99):.2f}"
            f" | {_ms(r.single, 0.5):.1f} / {_ms(r.single, 0.99):.1f} |"
        )
    services = sorted({service for r in results.values() for service in r.cpu_ms}, key=_service_order)
    print("\nCPU ms per order at saturation (`stack` is `up` itself, printing the logs):\n")
    print("| configuration | " + " | ".join(services) + " | total | ratio |")
    print("|---|" + "---:|" * (len(services) + 2))
    base_total = sum(base.cpu_ms.values())
    for name, r in results.items():
        total = sum(r.cpu_ms.values())
        cells = " | ".join(f"{r.cpu_ms[s]:.2f}" if s in r.cpu_ms else "-" for s in services)
        print(f"| {name} | {cells} | {total:.1f} | {total / base_total:.2f} |")
    print()
    for name, r in results.items():
        steps = ", ".join(f"c{c} {rate:.0f}/s p50 {1000 * p50:.0f} ms" for c, rate, p50, _ in r.saturation)
        finals = ", ".join(f"{state} {count}" for state, count in sorted(r.final_states.items()))
        print(f"  {name} steps: {steps}; orders by final state: {finals}")


_SHOWN_FIRST = ("gateway", "catalog", "orders", "inventory", "payments", "notifications", "redis")


def _service_order(service: str) -> tuple[int, str]:
    return (_SHOWN_FIRST.index(service) if service in _SHOWN_FIRST else len(_SHOWN_FIRST), service)


if __name__ == "__main__":
    main()
