"""Benchmark pooled HTTP clients for calls between services: the measurement behind flotilla_http.

One upstream (a Litestar app returning a small JSON product) runs under granian in a subprocess;
this process drives it with one shared client of each kind, each doing ``--requests`` GETs at
each concurrency, client order alternating, for ``--rounds`` rounds:

- aiohttp: one ``ClientSession`` on a keep-alive ``TCPConnector``;
- httpx: one ``AsyncClient`` (HTTP/1.1, pooled);
- flotilla h1: flotilla_http's own transport alone (``ConnectionPool``: asyncio Protocol + llhttp);
- flotilla client: the whole ``flotilla_http.HttpClient`` on that transport, as services call each
  other (static discovery, balancer, breaker, retry budget, deadline and trace headers, metrics).

It prints a markdown table (req/s, p50, p99 and the client process's CPU per request, medians of
the rounds) and throughput ratios. CPU per request is what a gateway pays for every relay.

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
    cpu_us: float  # CPU time of this (the client's) process per request


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


async def bench_flotilla_h1(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    from flotilla_http.pool import ConnectionPool, Origin

    pool = ConnectionPool(limit=max(concurrency, 100))
    origin = Origin.parse(url.removesuffix(PATH))
    target = PATH.encode()

    async def get_(_: str) -> int:
        answer = await pool.request(origin, b"GET", target, [], None)
        await answer.read()
        answer.release()
        return answer.status

    try:
        await run_load(get_, url, WARMUP_REQUESTS, concurrency)
        return await run_load(get_, url, requests, concurrency)
    finally:
        await pool.close()


async def bench_flotilla_client(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    from flotilla_discovery.balancer import Balancer
    from flotilla_discovery.static_resolver import StaticResolver
    from flotilla_http import HttpClient

    balancer = Balancer(StaticResolver({"products": [url.removesuffix(PATH)]}))
    async with HttpClient(balancer, max_connections=max(concurrency, 100)) as client:

        async def get_(_: str) -> int:
            response = await client.request("products", "GET", PATH)
            return response.status

        await run_load(get_, url, WARMUP_REQUESTS, concurrency)
        return await run_load(get_, url, requests, concurrency)


CLIENTS: dict[str, Callable[[str, int, int], Awaitable[tuple[float, list[float]]]]] = {
    "aiohttp": bench_aiohttp,
    "httpx": bench_httpx,
    "flotilla h1": bench_flotilla_h1,
    "flotilla client": bench_flotilla_client,
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
                cpu_before = time.process_time()
                elapsed, latencies = await CLIENTS[name](url, requests, concurrency)
                cpu = time.process_time() - cpu_before
                latencies.sort()
                result = Result(
                    client=name,
                    concurrency=concurrency,
                    round=round_,
                    requests_per_second=requests / elapsed,
                    p50_ms=percentile(latencies, 0.50) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000,
                    cpu_us=cpu / (requests + WARMUP_REQUESTS) * 1e6,
                )
                results.append(result)
                print(
                    f"  round {round_} c{concurrency:<3} {name:15} {result.requests_per_second:8.0f} req/s"
                    f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  cpu {result.cpu_us:5.0f} us/req",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def markdown(results: list[Result], concurrencies: list[int]) -> str:
    lines = [
        "| client | concurrency | req/s | p50 ms | p99 ms | client CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    medians: dict[tuple[str, int], float] = {}
    for concurrency in concurrencies:
        for name in CLIENTS:
            runs = [r for r in results if r.client == name and r.concurrency == concurrency]
            rps = statistics.median(r.requests_per_second for r in runs)
            medians[(name, concurrency)] = rps
            lines.append(
                f"| {name} | {concurrency} | {rps:.0f} | {statistics.median(r.p50_ms for r in runs):.2f}"
                f" | {statistics.median(r.p99_ms for r in runs):.2f} | {statistics.median(r.cpu_us for r in runs):.0f} |"
            )
    lines.append("")
    for concurrency in concurrencies:
        ratios = ", ".join(
            f"{name} / {base} = {medians[(name, concurrency)] / medians[(base, concurrency)]:.2f}"
            for name, base in (("aiohttp", "httpx"), ("flotilla h1", "aiohttp"), ("flotilla client", "aiohttp"))
        )
        lines.append(f"- c{concurrency} throughput: {ratios}")
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
    print(
        f"\nN={args.requests} GETs per run, median of {args.rounds} rounds, upstream granian (1 worker, uvloop, st)\n"
    )
    print(markdown(results, args.concurrency))


if __name__ == "__main__":
    main()
