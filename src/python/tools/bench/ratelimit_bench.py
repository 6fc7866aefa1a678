"""The gateway's rate limiter on PipelinedRedis and on redis-py's pooled client, side by side.

Run:  pants run src/python/tools/bench:ratelimit -- [--checks 20000] [--rounds 3] [--concurrency 64]
  or  PYTHONPATH=src/python/libs:src/python/services python src/python/tools/bench/ratelimit_bench.py

The gateway's ``RateLimiter`` (gateway/ratelimit.py) against a real Redis (a fresh
``flotilla_kit.testing.redis`` server), ``--concurrency`` checks in flight, on uvloop in one
process as in the gateway. Two workloads:

- **one busy caller**: every check is the same caller's, under a limit it never reaches; leased
  permits keep most checks off Redis (the column "Redis calls per check" says how many are left);
- **many callers**: every check is a new caller's, so every check is one Redis call (the GCRA script).

Two clients run the same script: ``flotilla_redis.pipelined.PipelinedRedis`` (one auto-pipelined
connection, hiredis) and the pooled redis-py client from ``flotilla_redis.factory.create_redis``
(its registered script: EVALSHA, EVAL when Redis forgot the script), sized for the checks in flight.
CPU per check is this process's (user + system), the Redis server's not included. Each round runs
every (workload, client) pair once, in alternating order; the table shows the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, cast

import redis.asyncio as redis
from redis.commands.core import AsyncScript

from flotilla_kit.testing.redis import start_redis
from flotilla_redis.factory import create_redis
from flotilla_redis.pipelined import PipelinedRedis
from gateway.ratelimit import RateClass, RateLimiter

WARM_UP_CHECKS = 2_000
CLASSES = {
    # Never reached: the busy caller's leases grow to their cap (a twentieth of the burst).
    "busy": RateClass(requests=10_000_000, per_seconds=1.0, burst=10_000_000),
    "each": RateClass(requests=100, per_seconds=1.0, burst=100),
}


class RedisPyScripts:
    """``PipelinedRedis.eval_script`` on a redis-py client: the interface the limiter calls."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, AsyncScript] = {}

    async def eval_script(self, script: str, keys: list[str], args: list[int | str]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self.client.register_script(script)
        return await registered(keys=keys, args=args)


@dataclass(frozen=True)
class Workload:
    name: str
    rate_class: str
    callers: Callable[[str], Iterator[str]]  # caller keys for a run, given a prefix unique to it


WORKLOADS = [
    Workload("one busy caller", "busy", lambda prefix: itertools.repeat(f"{prefix}:the-caller")),
    Workload("many callers", "each", lambda prefix: (f"{prefix}:caller-{n}" for n in itertools.count())),
]


@dataclass(frozen=True)
class Measurement:
    checks_per_second: float
    cpu_us_per_check: float
    redis_calls_per_check: float


async def measure(limiter: RateLimiter, workload: Workload, prefix: str, checks: int, concurrency: int) -> Measurement:
    callers = workload.callers(prefix)
    left = checks

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            decision = await limiter.check(workload.rate_class, next(callers))
            if not decision.allowed:
                raise RuntimeError(f"{workload.name}: a check was denied; the bench measures admitted checks")

    calls_before = limiter.redis_calls
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
    return Measurement(checks / wall, cpu / checks * 1e6, (limiter.redis_calls - calls_before) / checks)


async def run_all(
    redis_url: str, checks: int, rounds: int, concurrency: int
) -> dict[tuple[str, str], list[Measurement]]:
    pipelined = PipelinedRedis(redis_url)
    pooled = create_redis(redis_url, max_connections=concurrency)
    clients: dict[str, Any] = {"PipelinedRedis": pipelined, "redis-py pool": RedisPyScripts(pooled)}
    results: dict[tuple[str, str], list[Measurement]] = {}
    try:
        for number in range(rounds):
            order = list(clients.items())
            if number % 2:
                order.reverse()
            for workload in WORKLOADS:
                for client_name, client in order:
                    # A fresh limiter per run: no leases or caller states carried over. Typed for
                    # PipelinedRedis; it calls only eval_script, which the redis-py adapter has too.
                    limiter = RateLimiter(cast(PipelinedRedis, client), CLASSES, namespace=f"bench:{number}")
                    prefix = f"{client_name}:{workload.name}"
                    await measure(limiter, workload, f"warm-up:{prefix}", WARM_UP_CHECKS, concurrency)
                    result = await measure(limiter, workload, prefix, checks, concurrency)
                    results.setdefault((workload.name, client_name), []).append(result)
    finally:
        await pipelined.close()
        await pooled.aclose()
    return results


def report(results: dict[tuple[str, str], list[Measurement]], checks: int, rounds: int, concurrency: int) -> None:
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("redis", "hiredis", "uvloop"))
    print(
        f"\n{checks} checks per run, {concurrency} in flight, median of {rounds} rounds; "
        f"Python {platform.python_version()}, {versions}\n"
    )
    print("| workload | client | checks/s | CPU µs/check | Redis calls/check |")
    print("|---|---|---:|---:|---:|")
    medians: dict[tuple[str, str], Measurement] = {}
    for (workload_name, client), runs in results.items():
        median = medians[workload_name, client] = Measurement(
            statistics.median(r.checks_per_second for r in runs),
            statistics.median(r.cpu_us_per_check for r in runs),
            statistics.median(r.redis_calls_per_check for r in runs),
        )
        print(
            f"| {workload_name} | {client} | {median.checks_per_second:,.0f} | {median.cpu_us_per_check:.1f} "
            f"| {median.redis_calls_per_check:.4f} |"
        )
    print()
    for workload in WORKLOADS:
        ours, theirs = medians[workload.name, "PipelinedRedis"], medians[workload.name, "redis-py pool"]
        print(
            f"- {workload.name}: PipelinedRedis {ours.checks_per_second / theirs.checks_per_second:.2f}x the checks/s "
            f"of the redis-py pool, at {ours.cpu_us_per_check / theirs.cpu_us_per_check:.2f}x its CPU per check"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=20_000, help="checks per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64, help="checks in flight")
    args = parser.parse_args()
    if args.checks < 1 or args.rounds < 1 or args.concurrency < 1:
        parser.error("--checks, --rounds and --concurrency must be positive")
    server = start_redis()
    try:
        import uvloop

        results = uvloop.run(run_all(server.url, args.checks, args.rounds, args.concurrency))
    finally:
        server.close()
    report(results, args.checks, args.rounds, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
