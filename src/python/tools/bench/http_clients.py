"""Benchmark the two candidate pooled HTTP clients for flotilla_http: aiohttp vs httpx.

One upstream (a Litestar app returning a small JSON product) runs under granian in a subprocess;
this process drives it with (a) one shared ``aiohttp.ClientSession`` on a keep-alive
``TCPConnector`` and (b) one shared ``httpx.AsyncClient`` (HTTP/1.1, pooled), each doing
``--requests`` GETs at each concurrency, alternating client order, for ``--rounds`` rounds.
It prints a markdown table (req/s, p50, p99 per client and concurrency, best of rounds by req/s and
the median of rounds) and the aiohttp/httpx throughput ratio.

Run:  python http_clients.py                  (N=20000, concurrency 16 and 64, 2 rounds)
      python http_clients.py --requests 2000 --rounds 1   (smoke test)

The load generator runs on uvloop in one process, like a service would; the upstream is one granian
worker. Both share the machine's cores, so absolute numbers are machine-bound: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import serve_asgi

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
# The same in-memory Litestar app the ASGI server comparison serves (a small JSON product).
UPSTREAM_APP = "bench.asgi_servers:create_app"
PATH = "/products/42"
WARMUP_REQUESTS = 1000


# ------------------------------------------------------------------ upstream process


# ------------------------------------------------------------------ clients

Get = Callable[[str], Awaitable[int]]


@dataclass
class Result:
    client: str
    concurrency: int
    round: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float


async def run_load(get_: Get, url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Issue ``requests`` GETs from ``concurrency`` workers; return (elapsed seconds, latencies in s)."""
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            status = await get_(url)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def bench_aiohttp(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    import aiohttp

    # limit=0 would be unbounded; size the pool to the concurrency as a service would.
    connector = aiohttp.TCPConnector(limit=max(concurrency, 100), keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get_(target: str) -> int:
            async with session.get(target) as response:
                await response.read()
                return response.status

        await run_load(get_, url, WARMUP_REQUESTS, concurrency)
        return await run_load(get_, url, requests, concurrency)


async def bench_httpx(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    import httpx

    limits = httpx.Limits(max_connections=max(concurrency, 100), max_keepalive_connections=max(concurrency, 100))
    async with httpx.AsyncClient(http1=True, http2=False, limits=limits) as client:

        async def get_(target: str) -> int:
            response = await client.get(target)
            return response.status_code

        await run_load(get_, url, WARMUP_REQUESTS, concurrency)
        return await run_load(get_, url, requests, concurrency)


CLIENTS: dict[str, Callable[[str, int, int], Awaitable[tuple[float, list[float]]]]] = {
    "aiohttp": bench_aiohttp,
    "httpx": bench_httpx,
}


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_all(url: str, requests: int, concurrencies: list[int], rounds: int) -> list[Result]:
    results: list[Result] = []
    names = list(CLIENTS)
    for round_ in range(1, rounds + 1):
        for concurrency in concurrencies:
            # Alternate who goes first so neither always gets the warmer machine.
            order = names if (round_ + concurrencies.index(concurrency)) % 2 else list(reversed(names))
            for name in order:
                elapsed, latencies = await CLIENTS[name](url, requests, concurrency)
                latencies.sort()
                result = Result(
                    client=name,
                    concurrency=concurrency,
                    round=round_,
                    requests_per_second=requests / elapsed,
                    p50_ms=percentile(latencies, 0.50) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000,
                )
                results.append(result)
                print(
                    f"  round {round_} c{concurrency:<3} {name:8} {result.requests_per_second:8.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def markdown(results: list[Result], concurrencies: list[int]) -> str:
    lines = [
        "| client | concurrency | req/s (best) | req/s (median) | p50 ms (median) | p99 ms (median) |",
        "|---|---|---|---|---|---|",
    ]
    medians: dict[tuple[str, int], float] = {}
    for concurrency in concurrencies:
        for name in CLIENTS:
            runs = [r for r in results if r.client == name and r.concurrency == concurrency]
            rps = statistics.median(r.requests_per_second for r in runs)
            medians[(name, concurrency)] = rps
            lines.append(
                f"| {name} | {concurrency} | {max(r.requests_per_second for r in runs):.0f} | {rps:.0f} "
                f"| {statistics.median(r.p50_ms for r in runs):.2f} | {statistics.median(r.p99_ms for r in runs):.2f} |"
            )
    lines.append("")
    for concurrency in concurrencies:
        ratio = medians[("aiohttp", concurrency)] / medians[("httpx", concurrency)]
        lines.append(f"- c{concurrency}: aiohttp / httpx throughput = {ratio:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("aiohttp", "httpx", "granian", "litestar"))
    print(f"{versions}; python {sys.version.split()[0]}; {os.cpu_count()} cpus", file=sys.stderr)
    upstream = serve_asgi(UPSTREAM_APP, free_port())
    try:
        import uvloop

        results = uvloop.run(run_all(upstream.base_url + PATH, args.requests, args.concurrency, args.rounds))
    finally:
        upstream.stop()
    print(f"\nN={args.requests} GETs per run, {args.rounds} rounds, upstream granian (1 worker, uvloop, st)\n")
    print(markdown(results, args.concurrency))


if __name__ == "__main__":
    main()
