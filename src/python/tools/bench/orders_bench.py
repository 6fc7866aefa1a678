"""Orders through the saga: how many reach a final state per second, and how long one takes.

Run:  ./pants run src/python/tools/bench:orders -- [--seconds 15] [--instances 1,2]

Starts the whole shop as processes on SQLite (stack.runner: Redis with AOF, catalog, inventory,
orders, payments, notifications, the gateway), seeds products with ample stock, then for each
instance count of inventory and payments (the consumer services):

1. saturation: closed loops of customers (each places an order through the gateway with a JWT and
   waits for its final event), at rising concurrency; orders/s reaching a final state, and the CPU
   seconds per order of each service (from /proc, over the run at the highest rate);
2. latency at half of saturation: orders placed at a fixed pace (open loop), time from sending
   ``POST /orders`` to the order's ``OrderConfirmed`` entry being read from ``orders.events``:
   p50 and p99. A paced single order shows one saga's cost without queueing.

Final states are read from the orders stream (XREAD by the bench itself), not by polling the API,
so measuring adds no load to the services.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec
import redis.asyncio as aioredis
from stack.runner import Platform, running_platform

from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_streams.envelope import ENVELOPE_FIELD, decode

_FINAL_TYPES = {"orders.OrderConfirmed": "confirmed", "orders.OrderCancelled": "cancelled"}
_order_id = msgspec.json.Decoder(dict[str, object])
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


class Shop:
    def __init__(self, platform: Platform, products: list[str]) -> None:
        self.platform = platform
        self.products = products
        self.outcomes = Outcomes()
        self.session: aiohttp.ClientSession | None = None
        self.tokens = [platform.token("customer", sub=f"bench-{i}") for i in range(64)]

    async def place(self, n: int) -> tuple[str, float]:
        """Place one order; returns its id and the monotonic time the request was sent."""
        assert self.session is not None
        body = {"lines": [{"product_id": self.products[n % len(self.products)], "quantity": 1}]}
        headers = {"authorization": f"Bearer {self.tokens[n % len(self.tokens)]}", "idempotency-key": uuid.uuid4().hex}
        sent = time.monotonic()
        async with self.session.post(f"{self.platform.url}/api/orders", json=body, headers=headers) as response:
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


def _process_tree_cpu() -> dict[int, tuple[int, float]]:
    """Every process's (parent pid, CPU seconds so far), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        found[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS)
    return found


def _cpu_by_service(platform: Platform) -> dict[str, float]:
    """CPU seconds so far of each service's processes (a service's server runs its app in a child)."""
    processes = _process_tree_cpu()
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu) in processes.items():
        children.setdefault(parent, []).append(pid)

    def tree(pid: int) -> float:
        return processes.get(pid, (0, 0.0))[1] + sum(tree(child) for child in children.get(pid, []))

    roots = {name: p.process.pid for name, p in platform.instances.items()}
    assert platform.gateway is not None
    roots["gateway"] = platform.gateway.process.pid
    totals: dict[str, float] = {}
    for instance, pid in roots.items():
        service = instance.split("-")[0]
        totals[service] = totals.get(service, 0.0) + tree(pid)
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


def _seed(platform: Platform, count: int) -> list[str]:
    products = []
    with platform.client("admin", sub="bench-admin") as admin:
        for i in range(count):
            body = {"sku": f"BENCH-{i}", "name": f"Bench tea {i}", "price": {"amount": 450, "currency": "EUR"}}
            created = admin.post("/api/catalog/products", json=body)
            created.raise_for_status()
            product = created.json()["id"]
            deadline = time.monotonic() + 30
            while admin.get(f"/api/inventory/stock/{product}").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("inventory never learnt of the seeded products")
                time.sleep(0.05)
            admin.put(
                f"/api/inventory/stock/{product}", json={"on_hand": 10**8, "reason": "bench"}
            ).raise_for_status()
            products.append(product)
    return products


async def _measure(platform: Platform, products: list[str], seconds: float, levels: list[int]) -> Result:
    shop = Shop(platform, products)
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch(platform.redis_server.url, shop.outcomes, stop))
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as shop.session:
        try:
            await shop.place_and_wait(0)  # warm up every hop
            single = [await shop.place_and_wait(n) for n in range(20)]
            best: tuple[float, int, dict[str, float]] = (0.0, 0, {})
            saturation = []
            for concurrency in levels:
                before = _cpu_by_service(platform)
                rate, latencies = await _closed_loop(shop, concurrency, seconds)
                after = _cpu_by_service(platform)
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
    return Result(single, saturation, rate, concurrency, cpu, paced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each load step")
    parser.add_argument("--instances", default="1,2", help="instance counts of inventory and payments to measure")
    parser.add_argument("--concurrency", default="4,16,32,64", help="closed-loop customers per step")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[int, Result] = {}
    for instances in [int(n) for n in args.instances.split(",")]:
        print(f"inventory and payments x{instances}:", flush=True)
        with tempfile.TemporaryDirectory() as directory, running_platform(Path(directory)) as platform:
            for service in ("inventory", "payments"):
                for n in range(2, instances + 1):
                    platform.start(service, f"{service}-{n}")
            products = _seed(platform, 20)
            results[instances] = asyncio.run(_measure(platform, products, args.seconds, levels))
    _report(results, args)


def _report(results: dict[int, Result], args: argparse.Namespace) -> None:
    print(
        f"\nmachine: nproc {os.cpu_count()}, python {platform.python_version()}; SQLite per service,"
        f" every service one granian worker, {args.seconds:.0f} s per step\n"
    )
    print(
        "| inventory, payments | orders/s at saturation (customers) | POST to confirmed at half: p50 / p99 ms |", end=""
    )
    print(" one order alone: p50 / p99 ms |")
    print("|---|---:|---:|---:|")
    for instances, r in results.items():
        print(
            f"| x{instances} | {r.rate:.0f} ({r.concurrency}) | {_ms(r.half, 0.5):.1f} / {_ms(r.half, 0.99):.1f}"
            f" at {r.rate / 2:.0f}/s | {_ms(r.single, 0.5):.1f} / {_ms(r.single, 0.99):.1f} |"
        )
    print("\nCPU ms per order at saturation:")
    for instances, r in results.items():
        print(f"  x{instances}: " + ", ".join(f"{s} {ms:.2f}" for s, ms in sorted(r.cpu_ms.items())))
    for instances, r in results.items():
        steps = ", ".join(f"c{c} {rate:.0f}/s p50 {1000 * p50:.0f} ms" for c, rate, p50, _ in r.saturation)
        print(f"  x{instances} steps: {steps}")


if __name__ == "__main__":
    main()
