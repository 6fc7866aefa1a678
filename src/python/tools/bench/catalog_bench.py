"""Catalog reads as the catalog grows: each read's p50/p99 and req/s at 1k, 100k and 1M products.

Run:  ./pants run src/python/tools/bench:catalog -- [--sizes 1000,100000,1000000] [--backends sqlite,postgresql]
      [--duration 5s] [--connections 4]
(needs wrk: apt-get install wrk; PostgreSQL's server binaries for the postgresql backend)

For each backend, one database grows through the sizes, smallest first:

1. the catalog's own schema is made by its own migrations (``catalog.migrations``, as the service
   makes it), then products are bulk-inserted straight into the database (sqlite3 executemany on
   SQLite, without search keys, then the catalog's own bulk path, ``catalog.search_order.RENUMBER_ALL``,
   numbers every product in SKU order and rebuilds the FTS5 index; COPY on PostgreSQL, whose
   triggers fill the words table, then VACUUM ANALYZE, as autovacuum would), each row built as the
   service builds it (the search words from ``catalog.search.search_document``): inserting a million products through the API would take
   hours and measure nothing of interest here;
2. the catalog is started from source (``python -m catalog serve``, one process, as deployed), on
   that database, with a Redis of its own; a sample of products spread over the SKU order must be
   found by a search for their SKU and a word of their name (the bulk load kept the index in step);
3. wrk (one thread, ``--connections`` connections, closed loop) measures each read in turn:

   - by id, by SKU: a product in the middle of the catalog;
   - first page, deep page: 50 products, from the start and from a cursor 90% down the SKU order;
   - search, many matches: ``q=green``, a word of ~10% of the products, spread over the SKU order;
   - search, many matches late in the SKU order: ``q=tea``, ~10% of the products, all with SKUs
     starting ``TEA-`` (a walk of the SKU order meets them only after ~80% of the catalog);
   - search, two words: ``q=green tea``, ~1% of the products (the intersection of two ~10% words);
   - search, short prefix: ``q=ka``, a beginning of thousands of made-up words, in most products;
   - search, no match: a word no product has;
   - price range: 10.00 to 20.00 EUR, ~10% of the products (prices are log-uniform 1 to 1000).

   Each read is checked once (status, number of items) before it is measured; errors under load
   (wrk's timeouts of 2 s, non-2xx answers) are counted in the table.

Products are generated from a fixed seed: ten kinds (coffee, cup, ... tea, tin), the SKU starting
with the kind; names of an adjective (one of ten: green, black, ...), the kind and a word; a
description of 8-16 words drawn from 20,000 made-up words; 80% EUR; 95% active.

The table gives p50, p99 and req/s per read and size, and the ratio of each read's p50 to its
figure at the smallest size (the issue's aim: at most 1.5 at 1M; a search with no match under 10 ms).
The machine is shared: compare ratios of one run, not figures across runs. Ratios are against the
smallest size of the run: for the 1M figures alone, run ``--sizes 1000,1000000 --backends sqlite`` (or
postgresql), one backend at a time if you like.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import random
import sqlite3
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from bench.wrk import WrkResult, run_wrk
from catalog.domain import sku_cursor
from catalog.search import search_document
from catalog.search_order import RENUMBER_ALL
from flotilla_kit.db import Database
from flotilla_kit.migrations import migrate
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess

KINDS = ["coffee", "cup", "filter", "grinder", "kettle", "mug", "pot", "spoon", "tea", "tin"]
ADJECTIVES = ["green", "black", "white", "smoky", "fresh", "organic", "earl", "jasmine", "mint", "classic"]
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "bo", "da", "fu", "gi", "ho", "ju", "pe"]
_SEED = 17
_BATCH = 10_000


@dataclass(frozen=True)
class Read:
    name: str
    path: str
    items: int | None  # items the answer must hold (None: a single product, or not checked)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1000,100000,1000000", help="catalog sizes, ascending (default: %(default)s)"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="sqlite, postgresql or both (default: %(default)s)"
    )
    parser.add_argument("--duration", default="5s", help="wrk duration per read (default: %(default)s)")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size) for size in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be whole numbers separated by commas, not {args.sizes!r}")
    if any(size < 100 for size in args.sizes) or args.sizes != sorted(set(args.sizes)):
        parser.error(f"--sizes must be ascending, distinct and at least 100, not {args.sizes}")
    args.backends = args.backends.split(",")
    unknown = [backend for backend in args.backends if backend not in ("sqlite", "postgresql")]
    if unknown:
        parser.error(f"unknown --backends {unknown} (known: sqlite, postgresql)")
    if args.connections < 1:
        parser.error(f"--connections must be at least 1, not {args.connections}")
    return args


# --- the products ---------------------------------------------------------------------------------


def _vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < 20_000:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def generate(count: int, start: int) -> Iterator[tuple[object, ...]]:
    """Products ``start .. start+count-1`` of the fixed sequence, as column tuples (see COLUMNS)."""
    rng = random.Random(_SEED * 1_000_003 + start)
    vocabulary = _vocabulary(random.Random(_SEED))
    now = datetime.now(UTC)
    for index in range(start, start + count):
        kind = KINDS[rng.randrange(len(KINDS))]
        sku = f"{kind[:3].upper()}-{index:07d}{rng.getrandbits(24):06X}"
        name = f"{ADJECTIVES[rng.randrange(len(ADJECTIVES))].title()} {kind} {rng.choice(vocabulary)}"
        description = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 16)))
        price = round(math.exp(rng.uniform(math.log(100), math.log(100_000))))  # 1.00 .. 1000.00, log-uniform
        currency = rng.choices(["EUR", "USD", "GBP"], weights=[8, 1, 1])[0]
        active = rng.random() < 0.95
        yield (uuid.UUID(int=rng.getrandbits(128)), sku, name, description, price, currency, active, 1, now, now,
               search_document(sku, name, description))  # fmt: skip


COLUMNS = ("id", "sku", "name", "description", "price_amount", "currency", "active", "version", "created_at",
           "updated_at", "search_document")  # fmt: skip


def insert_sqlite(path: Path, count: int, start: int) -> None:
    # The values as SQLAlchemy stores them on SQLite: UUIDs as 32 hex digits, times as text in UTC.
    connection = sqlite3.connect(path)
    try:
        statement = f"INSERT INTO products ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        rows = generate(count, start)
        while batch := list(itertools.islice(rows, _BATCH)):
            connection.executemany(statement, [_sqlite_values(row) for row in batch])
            connection.commit()
        # Inserted without search keys (out of the FTS5 index), then numbered and indexed by the
        # catalog's own bulk path, as revision 0004 does for the products it finds.
        connection.execute("BEGIN")
        for step in RENUMBER_ALL:
            connection.execute(step)
        connection.commit()
    finally:
        connection.close()


def _sqlite_values(row: tuple[object, ...]) -> tuple[object, ...]:
    product_id, *middle, active, version, created_at, updated_at, document = row
    assert isinstance(product_id, uuid.UUID) and isinstance(created_at, datetime) and isinstance(updated_at, datetime)
    return (
        product_id.hex,
        *middle,
        int(bool(active)),
        version,
        _sqlite_time(created_at),
        _sqlite_time(updated_at),
        document,
    )


def _sqlite_time(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


async def insert_postgresql(url: str, count: int, start: int) -> None:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    try:
        rows = generate(count, start)
        while batch := list(itertools.islice(rows, _BATCH)):
            await connection.copy_records_to_table("products", records=batch, columns=list(COLUMNS))
        # What autovacuum does after a bulk load: merge the GIN index's pending list (which every
        # search otherwise scans whole), mark the pages all-visible (index-only scans of the words
        # table, which its triggers filled) and gather the planner's statistics.
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await migrate(db, "catalog.migrations")
    finally:
        await db.dispose()


async def _fetch_value(url: str, sql: str) -> object:
    import sqlalchemy as sa

    db = Database(url)
    try:
        row = await db.fetch_one(sa.text(sql))
        assert row is not None, sql
        return row[0]
    finally:
        await db.dispose()


# --- measuring ------------------------------------------------------------------------------------


def reads_of(url: str, size: int) -> list[Read]:
    """The reads measured, with the product and cursor they need picked from the database."""
    middle = f"SELECT {{}} FROM products ORDER BY sku LIMIT 1 OFFSET {size // 2}"
    product_id = asyncio.run(_fetch_value(url, middle.format("id")))
    sku = asyncio.run(_fetch_value(url, middle.format("sku")))
    deep = asyncio.run(_fetch_value(url, f"SELECT sku FROM products ORDER BY sku LIMIT 1 OFFSET {size * 9 // 10}"))
    product_id = product_id if isinstance(product_id, uuid.UUID) else uuid.UUID(hex=str(product_id))
    cursor = urllib.parse.quote(sku_cursor(str(deep)))
    return [
        Read("by id", f"/products/{product_id}", None),
        Read("by SKU", f"/products/by-sku/{sku}", None),
        Read("first page (50)", "/products?limit=50", 50),
        Read("deep page (50, 90% down)", f"/products?limit=50&cursor={cursor}", 50),
        Read("search, many matches (green)", "/products?limit=50&q=green", 50),
        Read("search, many matches late in SKU order (tea)", "/products?limit=50&q=tea", 50),
        Read("search, two words (green tea, ~1%)", "/products?limit=50&q=green+tea", None),
        Read("search, short prefix (ka)", "/products?limit=50&q=ka", 50),
        Read("search, no match", "/products?limit=50&q=qqxyz", 0),
        Read("price range 10-20 EUR (50)", "/products?limit=50&currency=EUR&min_price=1000&max_price=2000", 50),
    ]


def check(base_url: str, read: Read) -> None:
    try:
        with urllib.request.urlopen(base_url + read.path, timeout=60) as response:
            body = msgspec.json.decode(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{read.name}: {base_url + read.path} answered {exc.code}: {exc.read()[:500]!r}") from None
    if read.items is not None and len(body["items"]) != read.items:
        raise SystemExit(f"{read.name}: expected {read.items} items, got {len(body['items'])}")


def check_searchable(base_url: str, url: str, size: int, samples: int = 5) -> None:
    """Products spread over the SKU order are found by a search for their SKU and a word of their
    name (the bulk load kept the text index in step)."""
    for offset in range(0, size, size // samples):
        row = f"SELECT {{}} FROM products ORDER BY sku LIMIT 1 OFFSET {offset}"
        sku, name = (str(asyncio.run(_fetch_value(url, row.format(column)))) for column in ("sku", "name"))
        query = urllib.parse.urlencode({"q": f"{name.split()[-1]} {sku}", "limit": 100})
        with urllib.request.urlopen(f"{base_url}/products?{query}", timeout=60) as response:
            found = [item["sku"] for item in msgspec.json.decode(response.read())["items"]]
        if sku not in found:
            raise SystemExit(f"the bulk-loaded product {sku} ({name!r}) is not found by searching for it: {found}")


def serve_catalog(database_url: str, redis_url: str, data_dir: Path) -> ServiceProcess:
    port = free_port()
    env = {
        "PYTHONPATH": os.pathsep.join(sys.path),  # from source: the sources this bench runs from
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "MAX_PAGE_SIZE": "100",
    }
    process = ServiceProcess(
        [sys.executable, "-m", "catalog", "serve", "--port", str(port)], port=port, env=env, cwd=str(data_dir)
    )
    process.wait_ready(timeout=120)
    return process


def bench_backend(
    backend: str, args: argparse.Namespace, redis_url: str, work: Path
) -> dict[str, dict[int, WrkResult]]:
    results: dict[str, dict[int, WrkResult]] = {}
    postgres = None
    if backend == "sqlite":
        path = work / "catalog.db"
        url = f"sqlite+aiosqlite:///{path}"
    else:
        from flotilla_kit.testing.postgres import PostgresUnavailable, start_postgres

        try:
            postgres = start_postgres()
        except PostgresUnavailable as exc:
            raise SystemExit(f"postgresql backend: {exc}") from None
        url = postgres.create_database("catalog_bench")
    try:
        asyncio.run(_migrate(url))
        filled = 0
        for size in args.sizes:
            print(f"[{backend}] filling to {size:,} products ...", file=sys.stderr, flush=True)
            if backend == "sqlite":
                insert_sqlite(path, size - filled, filled)
            else:
                asyncio.run(insert_postgresql(url, size - filled, filled))
            filled = size
            service = serve_catalog(url, redis_url, work)
            try:
                check_searchable(service.base_url, url, size)
                for read in reads_of(url, size):
                    check(service.base_url, read)
                    result = run_wrk(service.base_url + read.path, args.connections, args.duration)
                    results.setdefault(read.name, {})[size] = result
                    print(f"[{backend}] {size:>9,} {read.name}: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                          f"{result.rps:,.0f} req/s, {result.errors} errors, load {os.getloadavg()[0]:.2f}",
                          file=sys.stderr, flush=True)  # fmt: skip
            finally:
                service.stop()
    finally:
        if postgres is not None:
            postgres.stop()
    return results


def table(backend: str, sizes: list[int], results: dict[str, dict[int, WrkResult]]) -> str:
    head = " | ".join(f"{size:,}: p50 / p99 ms, req/s" for size in sizes)
    lines = [f"### {backend}", "", f"| read | {head} | p50 at {sizes[-1]:,} / at {sizes[0]:,} |",
             "|---|" + "---|" * (len(sizes) + 1)]  # fmt: skip
    for read, by_size in results.items():
        cells = " | ".join(
            f"{r.p50_ms:.2f} / {r.p99_ms:.2f}, {r.rps:,.0f}" + (f" ({r.errors} errors)" if r.errors else "")
            for r in (by_size[s] for s in sizes)
        )
        lines.append(f"| {read} | {cells} | {by_size[sizes[-1]].p50_ms / by_size[sizes[0]].p50_ms:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    from flotilla_kit.testing.redis import RedisUnavailable, start_redis

    try:
        redis = start_redis()
    except RedisUnavailable as exc:
        raise SystemExit(f"cannot start Redis: {exc}") from None
    tables = []
    try:
        for backend in args.backends:
            with tempfile.TemporaryDirectory(prefix=f"catalog-bench-{backend}-") as work:
                results = bench_backend(backend, args, redis.url, Path(work))
            tables.append(table(backend, args.sizes, results))
    finally:
        redis.close()
    # The machine may be shared: its load, before and after, says how far to trust the figures.
    load = f"load average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
    print(f"wrk -t1 -c{args.connections} -d{args.duration}, {load}\n")
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
