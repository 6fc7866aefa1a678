"""The gateway's cost, measured in one run against two baselines.

Run:  ./pants run src/python/tools/bench:gateway -- [--duration 8s] [--rounds 5]   (needs wrk)

Starts, as real processes on loopback, each served by granian with one worker: Redis, an in-memory
upstream (a JSON product built per request), one catalog instance (SQLite), in front of each a
bare aiohttp proxy (bare_proxy.py) and nginx (nginx_proxy.py, one worker, upstream keep-alive),
and the gateway. Then wrk (one thread) measures, rounds alternating the order of the targets:

- in-memory upstream: direct, through nginx, through the bare proxy, through the gateway.
  Saturation (64 connections): what auth, limits, discovery and breakers cost beyond proxying
  itself. Latency at half the bare proxy's saturation rate (paced requests, see
  bench.wrk.run_wrk_paced).
- catalog GET of one product: the same four. Saturation (64 connections), and latency at half the
  direct saturation rate: the gateway issue's targets. The bare proxy shows what any one Python
  hop adds on this machine; nginx, what a user would put in front instead (the floor of a hop).

Added latency is the median over rounds of each round's difference, and the in-memory upstream's
throughput, set against the figure in shared/BENCHMARKS.md, says how fast the machine is today.

The gateway runs as in production: route table, token verification configured (the routes used
are public), the rate limit in Redis on every request, circuit breakers, retries.

``--tracing``: the cost of traces instead. Three gateways in front of the in-memory upstream,
tracing off, at 100 % and at 1 % (parentbased_traceidratio), exporting over OTLP/HTTP to a sink
in this process that reads and drops what it is sent; saturation (64 connections) of each in
alternating rounds, and each traced gateway's throughput as a ratio of the untraced one's.
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
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.cpu import ProcessTrees
from bench.nginx_proxy import serve_nginx
from bench.otlp_sink import otlp_sink
from bench.wrk import WrkResult, run_wrk, run_wrk_paced
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


# The in-memory upstream's throughput at 64 connections where shared/BENCHMARKS.md was measured:
# this run's figure against it says how fast this machine is today.
REFERENCE_DIRECT_RPS = 21_000


_RATIO = "OTEL_TRACES_SAMPLER_ARG"
_JSON = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}
TRACING_MODES = {
    "gateway": {},
    "gateway traced 100%": {_RATIO: "1"},
    "gateway traced 1%": {_RATIO: "0.01"},
    "gateway traced 100% (json)": {_RATIO: "1", **_JSON},
    "gateway traced 1% (json)": {_RATIO: "0.01", **_JSON},
}


def tracing_cost(args: argparse.Namespace) -> None:
    """``--tracing``: the gateway untraced, at 100 % and at 1 %, against the in-memory upstream."""
    redis_server = start_redis()
    processes: list[ServiceProcess] = []
    with tempfile.TemporaryDirectory(prefix="flotilla-gateway-bench-") as directory, otlp_sink() as endpoint:
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        public_pem = Path(directory) / "public.pem"
        public_pem.write_bytes(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        routes = Path(directory) / "routes.toml"
        routes.write_text(ROUTES)
        try:
            memory = serve_asgi("bench.asgi_servers:create_app", free_port())
            processes.append(memory)
            targets, pids = {}, {}
            for name, sampling in TRACING_MODES.items():
                env = {
                    "REDIS_URL": redis_server.url,
                    "JWT_PUBLIC_KEY_FILE": str(public_pem),
                    "ROUTES_FILE": str(routes),
                    "RATE_LIMITS": "default=1000000/1,burst=1000000",
                    "DISCOVERY": "static",
                    "SERVICE_URLS": f"memory={memory.base_url}",
                    **({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **_SAMPLER, **sampling} if sampling else {}),
                }
                gateway = _service("gateway", free_port(), env)
                processes.append(gateway)
                targets[name] = f"{gateway.base_url}/api/memory/products/42"
                pids[name] = gateway.process.pid
            results: Rounds = {}
            cpu: dict[str, list[float]] = {}  # the gateway's CPU µs per request, per round
            for url in targets.values():
                run_wrk(url, 16, "2s")  # warm up
            for round_ in range(args.rounds):
                for name in list(targets) if round_ % 2 == 0 else list(reversed(targets)):
                    before = ProcessTrees().tree(pids[name])
                    result = run_wrk(targets[name], 64, args.duration)
                    spent = ProcessTrees().tree(pids[name]) - before
                    requests = result.rps * _seconds(args.duration)
                    cpu.setdefault(name, []).append(spent / requests * 1e6)
                    results.setdefault((name, "c64"), []).append(result)
                    print(
                        f"round {round_ + 1} {name}: {result.rps:,.0f} req/s, {cpu[name][-1]:.0f} µs CPU per request",
                        file=sys.stderr,
                    )
        finally:
            for process in processes:
                process.stop()
            redis_server.close()
    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}; wrk -t1 -c64 -d{args.duration},"
        f" median of {args.rounds} rounds; spans exported over OTLP/HTTP to a sink that drops them"
    )
    _table("Gateway in front of the in-memory upstream, tracing off and on:", results)
    print("\n| gateway | CPU µs per request (median) |\n|---|---:|")
    for name, per_round in cpu.items():
        print(f"| {name} | {statistics.median(per_round):.0f} |")
    print()
    base_cpu = statistics.median(cpu["gateway"])
    for name in list(TRACING_MODES)[1:]:
        print(
            f"{name} / gateway, 64 connections: {_ratio(results, name, 'gateway'):.3f} throughput,"
            f" {base_cpu / statistics.median(cpu[name]):.3f} by CPU per request (aim at 1 %: >= 0.95)"
        )


_SAMPLER = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio"}


def _seconds(duration: str) -> float:
    """wrk's duration ("8s", "2m") in seconds."""
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


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


Rounds = dict[tuple[str, str], list[WrkResult]]  # (target, load) -> one result per round


def _measure(
    targets: dict[str, str], duration: str, rounds: int, paced_rate: Callable[[dict[str, WrkResult]], float]
) -> tuple[Rounds, float]:
    """Saturation (64 connections) of every target, then latency of each at ``paced_rate(saturation)``."""
    results: Rounds = {}
    for url in targets.values():
        run_wrk(url, 16, "2s")  # warm up: pools, caches, the gateway's resolver and rate-limit lease

    def measure(load: str, run: Callable[[str], WrkResult]) -> None:
        for round_ in range(rounds):
            for name in list(targets) if round_ % 2 == 0 else list(reversed(targets)):
                result = run(targets[name])
                results.setdefault((name, load), []).append(result)
                print(
                    f"round {round_ + 1} {name} {load}: {result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms",
                    file=sys.stderr,
                )

    measure("c64", lambda url: run_wrk(url, 64, duration))
    rate = paced_rate({name: _median(results[(name, "c64")]) for name in targets})
    measure("paced", lambda url: run_wrk_paced(url, rate, duration))
    return results, rate


def _table(title: str, rounds: Rounds) -> None:
    print(f"\n{title}\n")
    print("| target | load | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|")
    for (name, load), results in sorted(rounds.items(), key=lambda item: (item[0][1], item[0][0])):
        r = _median(results)
        print(f"| {name} | {load} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} |")


def _ratio(rounds: Rounds, over: str, under: str) -> float:
    return _median(rounds[(over, "c64")]).rps / _median(rounds[(under, "c64")]).rps


def _overhead(rounds: Rounds, through: str, base: str) -> str:
    """Added latency: the median over rounds of each round's difference. The two runs of a round
    are back to back, so a slow spell of this shared machine weighs on both alike."""
    pairs = list(zip(rounds[(through, "paced")], rounds[(base, "paced")], strict=True))
    p50 = statistics.median(over.p50_ms - under.p50_ms for over, under in pairs)
    p99 = statistics.median(over.p99_ms - under.p99_ms for over, under in pairs)
    return f"p50 {p50:+.2f} ms, p99 {p99:+.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", default="8s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tracing", action="store_true", help="measure the cost of traces instead (see above)")
    args = parser.parse_args()
    if args.tracing:
        tracing_cost(args)
        return

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
            bare_catalog = serve_asgi(
                "bench.bare_proxy:create_app", free_port(), env={"UPSTREAM_URL": catalog.base_url}
            )
            processes.append(bare_catalog)
            nginx = serve_nginx(memory.base_url, free_port(), Path(directory) / "nginx-memory")
            processes.append(nginx)
            nginx_catalog = serve_nginx(catalog.base_url, free_port(), Path(directory) / "nginx-catalog")
            processes.append(nginx_catalog)
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
            in_memory, in_memory_rate = _measure(
                {
                    "direct": f"{memory.base_url}/products/42",
                    "nginx": f"{nginx.base_url}/products/42",
                    "bare proxy": f"{bare.base_url}/products/42",
                    "gateway": f"{gateway.base_url}/api/memory/products/42",
                },
                args.duration,
                args.rounds,
                lambda saturation: saturation["bare proxy"].rps / 2,
            )
            catalog_read, catalog_rate = _measure(
                {
                    "direct": f"{catalog.base_url}/products/{product_id}",
                    "nginx": f"{nginx_catalog.base_url}/products/{product_id}",
                    "bare proxy": f"{bare_catalog.base_url}/products/{product_id}",
                    "gateway": f"{gateway.base_url}/api/catalog/products/{product_id}",
                },
                args.duration,
                args.rounds,
                lambda saturation: saturation["direct"].rps / 2,
            )
        finally:
            for process in processes:
                process.stop()
            redis_server.close()

    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}; wrk -t1 -d{args.duration},"
        f" median of {args.rounds} rounds; paced: 16 connections, random waits"
    )
    _table(f"In-memory upstream (a JSON product built per request); paced at {in_memory_rate:,.0f} req/s:", in_memory)
    _table(f"Catalog GET of one product (SQLite); paced at {catalog_rate:,.0f} req/s:", catalog_read)
    direct_rps = _median(in_memory[("direct", "c64")]).rps
    print(
        f"\nmachine speed: the in-memory upstream serves {direct_rps:,.0f} req/s at 64 connections"
        f" ({direct_rps / REFERENCE_DIRECT_RPS:.2f} of the ~{REFERENCE_DIRECT_RPS:,} in shared/BENCHMARKS.md)"
    )
    print(
        f"gateway / bare proxy, in-memory upstream, 64 connections: {_ratio(in_memory, 'gateway', 'bare proxy'):.2f}"
        " (aim >= 0.8)"
    )
    print(
        f"gateway / direct, in-memory upstream, 64 connections: {_ratio(in_memory, 'gateway', 'direct'):.2f}"
        f" (aim >= 0.6); nginx {_ratio(in_memory, 'nginx', 'direct'):.2f},"
        f" bare proxy {_ratio(in_memory, 'bare proxy', 'direct'):.2f}"
    )
    print(
        f"gateway / nginx, in-memory upstream, 64 connections: {_ratio(in_memory, 'gateway', 'nginx'):.2f};"
        f" catalog GET {_ratio(catalog_read, 'gateway', 'nginx'):.2f}"
    )
    print(
        f"gateway / direct, catalog GET, 64 connections: {_ratio(catalog_read, 'gateway', 'direct'):.2f}"
        f" (target >= 0.6); nginx {_ratio(catalog_read, 'nginx', 'direct'):.2f}"
    )
    print(
        "added latency, catalog GET at half the direct saturation rate (median of paired rounds): gateway"
        f" {_overhead(catalog_read, 'gateway', 'direct')} (target: p50 <= 1 ms, p99 <= 2 ms);"
        f" nginx {_overhead(catalog_read, 'nginx', 'direct')};"
        f" bare proxy {_overhead(catalog_read, 'bare proxy', 'direct')}"
    )
    print(
        "added latency, in-memory upstream at half the bare proxy's saturation rate: gateway"
        f" {_overhead(in_memory, 'gateway', 'direct')} (aim: p50 <= 0.5 ms);"
        f" nginx {_overhead(in_memory, 'nginx', 'direct')}; bare proxy {_overhead(in_memory, 'bare proxy', 'direct')}"
    )


if __name__ == "__main__":
    main()
