"""The gateway's cost, measured in one run against two baselines.

Run:  ./pants run src/python/tools/bench:gateway -- [--duration 10s] [--rounds 2]   (needs wrk)

Starts, as real processes on loopback, each served by granian with one worker: Redis, an in-memory
upstream (a JSON product built per request), a bare aiohttp proxy in front of it (bare_proxy.py),
one catalog instance (SQLite), and the gateway. Then wrk (one thread) measures, alternating:

- in-memory upstream: direct, through the bare proxy, through the gateway (64 and 4 connections):
  what auth, limits, discovery and breakers cost beyond proxying itself;
- catalog GET of one product: direct and through the gateway (64, 4 and 1 connections).

The gateway runs as in production: route table, token verification configured (the routes used
are public), the rate limit in Redis on every request, circuit breakers, retries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.wrk import WrkResult, run_wrk
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess, serve_asgi
from flotilla_kit.testing.redis import start_redis

ROUTES = """
[[routes]]
prefix = "/api/catalog/products"
service = "catalog"
upstream_prefix = "/products"
methods = ["GET"]
auth = "public"

[[routes]]
prefix = "/api/memory"
service = "memory"
methods = ["GET"]
auth = "public"
"""


def _service(module: str, port: int, env: dict[str, str]) -> ServiceProcess:
    process = ServiceProcess(
        [sys.executable, "-m", module, "serve", "--port", str(port)], port=port, env={"LOG_LEVEL": "WARNING", **env}
    )
    process.wait_ready(timeout=90)
    return process


def _create_product(catalog_url: str) -> str:
    body = json.dumps({"sku": "BENCH-1", "name": "Bench tea", "price": {"amount": 450, "currency": "EUR"}}).encode()
    request = urllib.request.Request(f"{catalog_url}/products", data=body, method="POST")
    for name, value in {"content-type": "application/json", "x-caller-id": "bench", "x-caller-roles": "admin"}.items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["id"])


def _median(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        rps=statistics.median(r.rps for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
    )


def _measure(
    targets: dict[str, str], connections: tuple[int, ...], duration: str, rounds: int
) -> dict[tuple[str, int], WrkResult]:
    results: dict[tuple[str, int], list[WrkResult]] = {}
    for url in targets.values():
        run_wrk(url, 16, "2s")  # warm up: pools, caches, the gateway's resolver
    for round_ in range(rounds):
        order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
        for connection_count in connections:
            for name in order:
                result = run_wrk(targets[name], connection_count, duration)
                results.setdefault((name, connection_count), []).append(result)
                print(
                    f"round {round_ + 1} {name} c{connection_count}: {result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms",
                    file=sys.stderr,
                )
    return {key: _median(values) for key, values in results.items()}


def _table(title: str, medians: dict[tuple[str, int], WrkResult]) -> None:
    print(f"\n{title}\n")
    print("| target | connections | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, connections), r in sorted(medians.items(), key=lambda item: (-item[0][1], item[0][0])):
        print(f"| {name} | {connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    redis_server = start_redis()
    processes: list[ServiceProcess] = []
    with tempfile.TemporaryDirectory(prefix="flotilla-gateway-bench-") as directory:
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        public_pem = Path(directory) / "public.pem"
        public_pem.write_bytes(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        routes = Path(directory) / "routes.toml"
        routes.write_text(ROUTES)
        common = {"DISCOVERY": "redis", "REDIS_URL": redis_server.url}
        try:
            memory = serve_asgi("bench.asgi_servers:create_app", free_port())
            processes.append(memory)
            bare = serve_asgi("bench.bare_proxy:create_app", free_port(), env={"UPSTREAM_URL": memory.base_url})
            processes.append(bare)
            catalog = _service("catalog", free_port(), {**common, "DATABASE_URL": f"sqlite:///{directory}/catalog.db"})
            processes.append(catalog)
            gateway = _service(
                "gateway",
                free_port(),
                {
                    **common,
                    "JWT_PUBLIC_KEY_FILE": str(public_pem),
                    "ROUTES_FILE": str(routes),
                    "RATE_LIMITS": "default=1000000/1,burst=1000000",
                    # The in-memory upstream is no flotilla service: it is found by a static URL.
                    "DISCOVERY": "static",
                    "SERVICE_URLS": f"catalog={catalog.base_url};memory={memory.base_url}",
                },
            )
            processes.append(gateway)
            product_id = _create_product(catalog.base_url)
            in_memory = _measure(
                {
                    "direct": f"{memory.base_url}/products/42",
                    "bare proxy": f"{bare.base_url}/products/42",
                    "gateway": f"{gateway.base_url}/api/memory/products/42",
                },
                (64, 4),
                args.duration,
                args.rounds,
            )
            catalog_read = _measure(
                {
                    "direct": f"{catalog.base_url}/products/{product_id}",
                    "gateway": f"{gateway.base_url}/api/catalog/products/{product_id}",
                },
                (64, 4, 1),
                args.duration,
                args.rounds,
            )
        finally:
            for process in processes:
                process.stop()
            redis_server.close()

    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}; wrk -t1 -d{args.duration}, median of {args.rounds} rounds"
    )
    _table("In-memory upstream (a JSON product built per request):", in_memory)
    _table("Catalog GET of one product (SQLite):", catalog_read)
    ratio = in_memory[("gateway", 64)].rps / in_memory[("bare proxy", 64)].rps
    print(f"\ngateway / bare proxy, in-memory upstream, 64 connections: {ratio:.2f} (aim >= 0.8)")
    ratio = catalog_read[("gateway", 64)].rps / catalog_read[("direct", 64)].rps
    print(f"gateway / direct, catalog GET, 64 connections: {ratio:.2f} (target >= 0.6)")
    for name, medians, base in (
        ("in-memory", in_memory, "bare proxy"),
        ("in-memory", in_memory, "direct"),
        ("catalog", catalog_read, "direct"),
    ):
        for connections in (4, 1):
            if (base, connections) in medians:
                through, under = medians[("gateway", connections)], medians[(base, connections)]
                print(
                    f"{name}, {connections} connection(s), gateway vs {base}: p50 {through.p50_ms - under.p50_ms:+.2f} ms,"
                    f" p99 {through.p99_ms - under.p99_ms:+.2f} ms"
                )


if __name__ == "__main__":
    main()
