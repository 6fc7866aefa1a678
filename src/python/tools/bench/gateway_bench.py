"""The gateway's cost: GET of one catalog product directly and through the gateway, in one run.

Run:  ./pants run src/python/tools/bench:gateway -- [--duration 10s] [--rounds 2]

Starts Redis, one catalog instance and the gateway as real processes on loopback (the services
from the same sources, each served by granian with one worker), creates a product, then measures
with wrk (one thread) alternately: direct and through the gateway at 64 connections (saturation),
and at 4 and 1 connections for the added latency (one connection: no queueing at all). The gateway runs as in production: route
table, token verification on (the route is public, so no token is needed for a read), rate limit
in Redis on every request, discovery through Redis, circuit breakers on.
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
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis


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
        common = {"DISCOVERY": "redis", "REDIS_URL": redis_server.url}
        try:
            catalog_port, gateway_port = free_port(), free_port()
            catalog = _service("catalog", catalog_port, {**common, "DATABASE_URL": f"sqlite:///{directory}/catalog.db"})
            processes.append(catalog)
            gateway = _service(
                "gateway",
                gateway_port,
                {
                    **common,
                    "JWT_PUBLIC_KEY_FILE": str(public_pem),
                    "RATE_LIMITS": "default=1000000/1,burst=1000000;strict=5/1",
                },
            )
            processes.append(gateway)
            product_id = _create_product(catalog.base_url)
            targets = {
                "direct": f"{catalog.base_url}/products/{product_id}",
                "gateway": f"{gateway.base_url}/api/catalog/products/{product_id}",
            }
            results: dict[tuple[str, int], list[WrkResult]] = {}
            for url in targets.values():
                run_wrk(url, 16, "2s")  # warm both up: pools, caches, the gateway's resolver
            for round_ in range(args.rounds):
                order = list(targets) if round_ % 2 == 0 else list(reversed(targets))
                for connections in (64, 4, 1):
                    for name in order:
                        result = run_wrk(targets[name], connections, args.duration)
                        results.setdefault((name, connections), []).append(result)
                        print(
                            f"round {round_ + 1} {name} c{connections}: {result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms",
                            file=sys.stderr,
                        )
        finally:
            for process in processes:
                process.stop()
            redis_server.close()

    medians = {key: _median(values) for key, values in results.items()}
    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}; wrk -t1 -d{args.duration}, median of {args.rounds} rounds\n"
    )
    print("| target | connections | req/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for (name, connections), r in sorted(medians.items(), key=lambda item: (-item[0][1], item[0][0])):
        print(f"| {name} | {connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")
    direct, through = medians[("direct", 64)], medians[("gateway", 64)]
    print(f"\nthroughput gateway/direct at 64 connections: {through.rps / direct.rps:.2f} (target >= 0.6)")
    for connections in (4, 1):
        light_direct, light_through = medians[("direct", connections)], medians[("gateway", connections)]
        print(
            f"added latency at {connections} connection(s): p50 {light_through.p50_ms - light_direct.p50_ms:+.2f} ms"
            f" (target <= 1 ms), p99 {light_through.p99_ms - light_direct.p99_ms:+.2f} ms"
        )


if __name__ == "__main__":
    main()
