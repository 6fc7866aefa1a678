"""End-to-end Redis Streams messaging: one Python process publishing and consuming at once.

Run:  PYTHONPATH=src/python/libs:src/python/tools python streams_bench.py [--events 20000] [--runs 3]
      [--only raw,faststream]

Every run gets a fresh Redis server (``flotilla_kit.testing.redis.start_redis``) and fresh stream and
group names. A configuration publishes ``n`` identical-shape ``OrderPlaced`` events while consuming
them, and is timed from its first publish until every event is handled and acked (XPENDING is 0).
Latency is handle time minus the ``sent_ns`` stamped into the event when it was built.

``flotilla_direct_traced_100`` and ``flotilla_direct_traced_1`` are ``flotilla_direct`` with traces on
(flotilla_kit.tracing: a PRODUCER span per publish, a CONSUMER span per handled event) at 100 % and
1 % (parentbased_traceidratio), exported over OTLP/HTTP to a sink that drops them
(``--only flotilla_direct,flotilla_direct_traced_100,flotilla_direct_traced_1`` for the tracing cost).

To add a configuration, write ``async def run_x(redis_url: str, n_events: int) -> Result`` on top of
``Tracker`` and ``measure`` and register it in ``CONFIGURATIONS``; name it in ``RATIOS`` to get its
ratio lines.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
from fast_depends.msgspec import MsgSpecSerializer  # pants: no-infer-dep (comes with faststream)
from faststream.redis import RedisBroker, StreamSub
from redis.utils import HIREDIS_AVAILABLE

from flotilla_contracts.events import Event
from flotilla_kit.db import Database
from flotilla_kit.settings import OtlpProtocol
from flotilla_kit.testing.redis import find_redis_server, start_redis
from flotilla_redis.factory import create_redis
from flotilla_streams.consumer import ConsumerOptions, HandlerContext, Handlers, StreamConsumer
from flotilla_streams.outbox import Outbox, OutboxRelay
from flotilla_streams.publisher import Publisher
from flotilla_streams.schema import create_messaging_tables

BATCH = 500  # entries per XADD pipeline and per XREADGROUP, for every configuration
BLOCK_MS = 100  # XREADGROUP BLOCK, and FastStream's polling_interval (the same thing there)
DATA_FIELD = b"data"
CONSUMER = "bench-consumer"
# XREADGROUP's reply with RESP2 (redis-py's default): [(stream, [(entry id, {field: value})])]
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
# Generous floor (500 events/s) so a stuck configuration fails instead of hanging the bench.
TIMEOUT_BASE_S = 30.0
TIMEOUT_MIN_RATE = 500


# --------------------------------------------------------------------------- payload


class OrderPlaced(msgspec.Struct):
    order_id: int
    customer_id: int
    sku: str
    quantity: int
    amount_minor: int
    currency: str
    sent_ns: int


ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(OrderPlaced)


def make_event(i: int) -> OrderPlaced:
    """Event ``i``, stamped now; ``order_id`` is ``i`` so the tracker can name the gaps."""
    return OrderPlaced(
        order_id=i,
        customer_id=i % 5000,
        sku="SKU-0042",
        quantity=1 + i % 5,
        amount_minor=12999,
        currency="EUR",
        sent_ns=time.perf_counter_ns(),
    )


# --------------------------------------------------------------------------- measurement


@dataclass
class Result:
    name: str
    events: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float  # of this process (all its threads) from first publish to last ack

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds / self.events * 1e6


@dataclass(frozen=True)
class Names:
    stream: str
    group: str


def fresh_names(configuration: str) -> Names:
    suffix = uuid.uuid4().hex[:8]
    return Names(stream=f"bench:{configuration}:{suffix}", group=f"{configuration}-{suffix}")


@dataclass
class Tracker:
    """Counts handled events by id and their latencies; ``all_handled`` fires on the n-th distinct id."""

    expected: int
    seen: set[int] = field(default_factory=set)
    latencies_ns: list[int] = field(default_factory=list)
    all_handled: asyncio.Event = field(default_factory=asyncio.Event)

    def handle(self, event: OrderPlaced) -> None:
        self.latencies_ns.append(time.perf_counter_ns() - event.sent_ns)
        self.seen.add(event.order_id)
        if len(self.seen) == self.expected:
            self.all_handled.set()

    def missing(self) -> list[int]:
        return sorted(set(range(self.expected)) - self.seen)

    def result(self, name: str, seconds: float, cpu_seconds: float) -> Result:
        # Redelivered duplicates are allowed (at least once) and their latencies count too.
        centiles = statistics.quantiles(self.latencies_ns, n=100)
        return Result(name, self.expected, seconds, centiles[49] / 1e6, centiles[98] / 1e6, cpu_seconds)


def timeout_for(n_events: int) -> float:
    return TIMEOUT_BASE_S + n_events / TIMEOUT_MIN_RATE


async def wait_acked(client: aioredis.Redis, names: Names, tracker: Tracker) -> tuple[int, int]:
    """Wait for every event to be handled, then for the group's pending list to empty; returns now
    (ns) and the process's CPU time (ns)."""
    await tracker.all_handled.wait()
    # Polled rather than awaited: frameworks ack internally, so Redis is the one witness every configuration shares.
    while (await client.xpending(names.stream, names.group))["pending"]:
        await asyncio.sleep(0.0005)
    return time.perf_counter_ns(), time.process_time_ns()


async def measure(
    name: str,
    redis_url: str,
    names: Names,
    tracker: Tracker,
    tasks: Iterable[Coroutine[Any, Any, None]],
) -> Result:
    """Run the publisher (and consumer loop, if any) concurrently; time first publish to last ack."""
    async with aioredis.Redis.from_url(redis_url) as probe:
        try:
            async with asyncio.timeout(timeout_for(tracker.expected)), asyncio.TaskGroup() as group:
                started_ns, started_cpu_ns = time.perf_counter_ns(), time.process_time_ns()
                for task in tasks:
                    group.create_task(task)
                acked = group.create_task(wait_acked(probe, names, tracker))
        except TimeoutError:
            missing = tracker.missing()
            gap = f"{len(missing)} never handled (first: {missing[:5]})" if missing else "some never acked"
            raise RuntimeError(f"{name}: timed out after {timeout_for(tracker.expected):.0f}s: {gap}") from None
    acked_ns, acked_cpu_ns = acked.result()
    return tracker.result(name, (acked_ns - started_ns) / 1e9, (acked_cpu_ns - started_cpu_ns) / 1e9)


# --------------------------------------------------------------------------- (a) raw redis-py


async def raw_publish(client: aioredis.Redis, stream: str, n_events: int) -> None:
    for start in range(0, n_events, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, n_events)):
            pipe.xadd(stream, {DATA_FIELD: ENCODER.encode(make_event(i))})
        await pipe.execute()


async def raw_consume(client: aioredis.Redis, names: Names, tracker: Tracker) -> None:
    while not tracker.all_handled.is_set():
        reply = cast(
            StreamReply,
            await client.xreadgroup(names.group, CONSUMER, {names.stream: ">"}, count=BATCH, block=BLOCK_MS),
        )
        for _stream, entries in reply:
            for _entry_id, fields in entries:
                tracker.handle(DECODER.decode(fields[DATA_FIELD]))
            # One multi-id XACK is one round trip: the cheapest way to ack the whole batch.
            await client.xack(names.stream, names.group, *(entry_id for entry_id, _ in entries))


async def run_raw(redis_url: str, n_events: int) -> Result:
    names, tracker = fresh_names("raw"), Tracker(n_events)
    async with aioredis.Redis.from_url(redis_url) as client:
        await client.xgroup_create(names.stream, names.group, id="0", mkstream=True)
        return await measure(
            "raw",
            redis_url,
            names,
            tracker,
            [raw_publish(client, names.stream, n_events), raw_consume(client, names, tracker)],
        )


# --------------------------------------------------------------------------- (d) FastStream


def faststream_broker(redis_url: str, names: Names, tracker: Tracker) -> RedisBroker:
    """FastStream's fastest documented setup for this handler.

    ``logger=None`` drops the two log records per message; ``MsgSpecSerializer`` (the documented
    msgspec backend) replaces pydantic, which was measurably slower here; the batch stream
    subscriber reads 500 per XREADGROUP and FastStream acks each batch with one multi-id XACK.
    """
    # None is what turns logging off (EmptyLoggerStorage), though the parameter is typed LoggerProto.
    broker = RedisBroker(redis_url, logger=None, serializer=MsgSpecSerializer())  # type: ignore[arg-type]

    @broker.subscriber(
        stream=StreamSub(
            names.stream,
            group=names.group,
            consumer=CONSUMER,
            batch=True,
            max_records=BATCH,
            polling_interval=BLOCK_MS,
        )
    )
    async def handle(events: list[OrderPlaced]) -> None:
        for event in events:
            tracker.handle(event)

    return broker


async def faststream_publish(broker: RedisBroker, stream: str, n_events: int) -> None:
    for i in range(n_events):
        await broker.publish(make_event(i), stream=stream)


async def faststream_publish_pipelined(broker: RedisBroker, stream: str, n_events: int) -> None:
    # The broker's own client, as FastStream's `Pipeline` dependency uses, but without its MULTI/EXEC
    # (transaction=False, as raw): the faster of the two, and the same pipelining raw gets.
    client = await broker.connect()
    for start in range(0, n_events, BATCH):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + BATCH, n_events)):
            await broker.publish(make_event(i), stream=stream, pipeline=pipe)
        await pipe.execute()


FastStreamPublisher = Callable[[RedisBroker, str, int], Coroutine[Any, Any, None]]


async def run_faststream_with(name: str, publish: FastStreamPublisher, redis_url: str, n_events: int) -> Result:
    names, tracker = fresh_names(name), Tracker(n_events)
    broker = faststream_broker(redis_url, names, tracker)
    await broker.start()  # creates the group at "$" (mkstream) before anything is published
    try:
        return await measure(name, redis_url, names, tracker, [publish(broker, names.stream, n_events)])
    finally:
        await broker.stop()


async def run_faststream(redis_url: str, n_events: int) -> Result:
    return await run_faststream_with("faststream", faststream_publish, redis_url, n_events)


async def run_faststream_pipelined(redis_url: str, n_events: int) -> Result:
    return await run_faststream_with("faststream_pipelined", faststream_publish_pipelined, redis_url, n_events)


# --------------------------------------------------------------------------- (b, c) flotilla_streams


class FlotillaOrderPlaced(Event, frozen=True, kw_only=True, tag="bench.OrderPlaced"):
    """The same payload as ``OrderPlaced``, as a flotilla event (it travels in an envelope)."""

    order_id: int
    customer_id: int
    sku: str
    quantity: int
    amount_minor: int
    currency: str
    sent_ns: int


def make_flotilla_event(i: int) -> FlotillaOrderPlaced:
    return FlotillaOrderPlaced(**msgspec.structs.asdict(make_event(i)))


def flotilla_consumer(client: aioredis.Redis, names: Names, tracker: Tracker, db: Database | None) -> StreamConsumer:
    handlers: Handlers[FlotillaOrderPlaced] = Handlers()

    @handlers.on(FlotillaOrderPlaced)
    async def handle(event: FlotillaOrderPlaced, _ctx: HandlerContext) -> None:
        tracker.handle(event)  # type: ignore[arg-type]  # same fields as OrderPlaced

    return StreamConsumer(
        client,
        group=names.group,
        consumer=CONSUMER,
        streams=[names.stream],
        handlers=handlers,
        db=db,
        options=ConsumerOptions(batch_size=BATCH, block_ms=BLOCK_MS),
    )


async def run_until_handled(consumer: StreamConsumer, tracker: Tracker) -> None:
    """Run the consumer until every event is handled; it acks the batch at hand before returning."""
    task = asyncio.create_task(consumer.run())
    await tracker.all_handled.wait()
    consumer.stop()
    await task


async def flotilla_publish(publisher: Publisher, stream: str, n_events: int) -> None:
    for start in range(0, n_events, BATCH):
        await publisher.publish_many(
            stream, [make_flotilla_event(i) for i in range(start, min(start + BATCH, n_events))]
        )


async def run_flotilla_direct(redis_url: str, n_events: int) -> Result:
    names, tracker = fresh_names("flotilla_direct"), Tracker(n_events)
    client = create_redis(redis_url)
    try:
        await client.xgroup_create(names.stream, names.group, id="0", mkstream=True)
        consumer = flotilla_consumer(client, names, tracker, db=None)
        publisher = Publisher(client, source="bench")
        tasks = [flotilla_publish(publisher, names.stream, n_events), run_until_handled(consumer, tracker)]
        return await measure("flotilla_direct", redis_url, names, tracker, tasks)
    finally:
        await client.aclose()


async def sqlite_service_db(directory: str, name: str) -> Database:
    db = Database(f"sqlite+aiosqlite:///{directory}/{name}.db")
    async with db.engine.begin() as connection:
        await connection.run_sync(create_messaging_tables)
    return db


async def outbox_publish(db: Database, outbox: Outbox, stream: str, n_events: int) -> None:
    # One transaction per batch of events, as a service writing a batch of changes would.
    for start in range(0, n_events, BATCH):
        async with db.transaction() as session:
            await outbox.add_many(
                session, stream, [make_flotilla_event(i) for i in range(start, min(start + BATCH, n_events))]
            )


async def run_flotilla_outbox_inbox(redis_url: str, n_events: int) -> Result:
    """Producer: outbox in its SQLite database, relayed to Redis. Consumer: inbox in another one."""
    names, tracker = fresh_names("flotilla_outbox_inbox"), Tracker(n_events)
    client = create_redis(redis_url)
    with tempfile.TemporaryDirectory(prefix="flotilla-bench-") as directory:
        producer_db = await sqlite_service_db(directory, "producer")
        consumer_db = await sqlite_service_db(directory, "consumer")
        try:
            await client.xgroup_create(names.stream, names.group, id="0", mkstream=True)
            outbox = Outbox(source="bench")
            relay = OutboxRelay(producer_db, client, outbox, batch_size=BATCH)
            relay_task = asyncio.create_task(relay.run())
            consumer = flotilla_consumer(client, names, tracker, db=consumer_db)
            tasks = [outbox_publish(producer_db, outbox, names.stream, n_events), run_until_handled(consumer, tracker)]
            result = await measure("flotilla_outbox_inbox", redis_url, names, tracker, tasks)
            relay.stop()
            await relay_task
            return result
        finally:
            await producer_db.dispose()
            await consumer_db.dispose()
            await client.aclose()


# --------------------------------------------------------------------------- registry and report


def traced(
    name: str, ratio: float, run: Callable[[str, int], Awaitable[Result]], protocol: OtlpProtocol = "http/protobuf"
) -> Callable[[str, int], Awaitable[Result]]:
    """``run`` with the service runtime's tracing on at ``ratio``, spans sent in ``protocol`` to a
    sink (a process of its own) that drops them."""

    async def run_traced(redis_url: str, n_events: int) -> Result:
        from opentelemetry import trace
        from opentelemetry.util._once import Once

        from bench.otlp_sink import otlp_sink
        from flotilla_kit.settings import ServiceSettings
        from flotilla_kit.tracing import Tracing

        with otlp_sink() as endpoint:
            settings = ServiceSettings(
                service_name="bench",
                otel_exporter_otlp_endpoint=endpoint,
                otel_traces_sampler="parentbased_traceidratio",
                otel_traces_sampler_arg=ratio,
                otel_exporter_otlp_protocol=protocol,
            )
            tracing = Tracing.from_settings(settings, version="bench")
            tracing.start()
            try:
                result = await run(redis_url, n_events)
            finally:
                await tracing.shutdown()
                # Every configuration runs in this one process; the API sets its provider once per
                # process, so forget it for the next (as OpenTelemetry's own test utilities do).
                trace._TRACER_PROVIDER = None
                trace._TRACER_PROVIDER_SET_ONCE = Once()
        return dataclasses.replace(result, name=name)

    return run_traced


CONFIGURATIONS: dict[str, Callable[[str, int], Awaitable[Result]]] = {
    "raw": run_raw,
    "flotilla_direct": run_flotilla_direct,
    "flotilla_direct_traced_100": traced("flotilla_direct_traced_100", 1.0, run_flotilla_direct),
    "flotilla_direct_traced_1": traced("flotilla_direct_traced_1", 0.01, run_flotilla_direct),
    "flotilla_direct_traced_100_json": traced(
        "flotilla_direct_traced_100_json", 1.0, run_flotilla_direct, protocol="http/json"
    ),
    "flotilla_direct_traced_1_json": traced("flotilla_direct_traced_1_json", 0.01, run_flotilla_direct, "http/json"),
    "flotilla_outbox_inbox": run_flotilla_outbox_inbox,
    "faststream": run_faststream,
    "faststream_pipelined": run_faststream_pipelined,
}

BASELINE = "raw"
# Extra "a vs b" lines, printed only when both configurations ran.
RATIOS: list[tuple[str, str]] = [
    ("flotilla_direct", "raw"),
    ("flotilla_direct_traced_100", "flotilla_direct"),
    ("flotilla_direct_traced_1", "flotilla_direct"),  # aim >= 0.95
    ("flotilla_direct_traced_100_json", "flotilla_direct"),
    ("flotilla_direct_traced_1_json", "flotilla_direct"),
    ("flotilla_direct", "faststream"),
    ("flotilla_direct", "faststream_pipelined"),
]


async def run_configuration(name: str, redis_url: str, n_events: int) -> Result:
    return await CONFIGURATIONS[name](redis_url, n_events)


def run_once(name: str, n_events: int) -> Result:
    server = start_redis()
    try:
        return asyncio.run(run_configuration(name, server.url, n_events))
    finally:
        server.close()


def run_all(names: list[str], n_events: int, runs: int) -> dict[str, Result]:
    """Each configuration ``runs`` times, order alternating between runs; the median of each."""
    results: dict[str, list[Result]] = {name: [] for name in names}
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            result = run_once(name, n_events)
            results[name].append(result)
            print(f"run {run + 1}/{runs} {name}: {result.events_per_s:,.0f} events/s", file=sys.stderr)
    return {name: _median(rs) for name, rs in results.items()}


def _median(runs: list[Result]) -> Result:
    # The median run by throughput, with the median CPU time of all runs (each varies on its own).
    middle = sorted(runs, key=lambda r: r.events_per_s)[len(runs) // 2]
    return dataclasses.replace(middle, cpu_seconds=statistics.median(r.cpu_seconds for r in runs))


def format_table(medians: dict[str, Result]) -> str:
    baseline = medians.get(BASELINE)
    lines = [
        "| configuration | events/s | p50 ms | p99 ms | CPU µs/event | ratio to raw |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in medians.values():
        ratio = f"{r.events_per_s / baseline.events_per_s:.2f}" if baseline else "n/a"
        lines.append(
            f"| {r.name} | {r.events_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.cpu_us_per_event:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def format_ratios(medians: dict[str, Result]) -> list[str]:
    # Throughput, and CPU per event inverted (b's over a's): on a shared machine, the share of the
    # cores a run gets moves its throughput, much less the CPU each event costs.
    return [
        f"{a} / {b}: {medians[a].events_per_s / medians[b].events_per_s:.2f}x throughput,"
        f" {medians[b].cpu_us_per_event / medians[a].cpu_us_per_event:.2f}x by CPU per event"
        for a, b in RATIOS
        if a in medians and b in medians
    ]


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def redis_server_version() -> str:
    out = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True, check=True).stdout
    return next((part[2:] for part in out.split() if part.startswith("v=")), out.strip())


def machine_line() -> str:
    packages = ", ".join(f"{p} {metadata.version(p)}" for p in ("redis", "msgspec", "faststream"))
    # Without hiredis, redis-py parses replies in Python: the largest cost on the consuming side.
    parser = "hiredis" if HIREDIS_AVAILABLE else "pure-Python"
    payload = len(ENCODER.encode(make_event(0)))
    return (
        f"machine: nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, redis-server {redis_server_version()}, "
        f"python {platform.python_version()}, {packages} ({parser} reply parser); payload {payload} bytes"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="comma-separated configurations (default: all)")
    args = parser.parse_args()
    requested = set(args.only.split(",")) if args.only else CONFIGURATIONS.keys()
    if unknown := requested - CONFIGURATIONS.keys():
        parser.error(f"unknown configurations {sorted(unknown)}; known: {sorted(CONFIGURATIONS)}")
    args.only = [name for name in CONFIGURATIONS if name in requested]  # table rows in registry order
    return args


def main() -> None:
    args = parse_args()
    print(machine_line())
    medians = run_all(args.only, args.events, args.runs)
    print(f"\n{args.events} events per run, median of {args.runs} runs\n")
    print(format_table(medians))
    for line in format_ratios(medians):
        print(line)


if __name__ == "__main__":
    main()
