"""streams-admin: inspect streams and their dead letters from anywhere that reaches Redis.

    streams-admin [--redis-url URL] dlq list|show|replay STREAM ...
    streams-admin [--redis-url URL] stats STREAM GROUP

Every service PEX that uses messaging has the same ``dlq`` command; this tool needs no service.
``stats`` also shows the group's upkeep as its consumers recorded it in Redis: recreations after
NOGROUP, entries reclaimed from dead consumers, idle consumers removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from flotilla_streams.cli import configure_dlq, run_dlq


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streams-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""), help="default: $REDIS_URL")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    configure_dlq(commands.add_parser("dlq", help="list, show and replay dead-lettered entries"))
    stats = commands.add_parser(
        "stats", help="length, pending, lag, DLQ size, recreations and reclaims of a consumer group"
    )
    stats.add_argument("stream")
    stats.add_argument("group")
    return parser


async def _stats(redis_url: str, stream: str, group: str) -> int:
    from redis.exceptions import RedisError

    from flotilla_redis.factory import create_redis
    from flotilla_streams.stats import group_stats

    try:
        client = create_redis(redis_url)
    except ValueError as exc:
        print(f"streams-admin: {exc}", file=sys.stderr)
        return 2
    try:
        stats = await group_stats(client, stream, group)
    except RedisError as exc:
        print(f"streams-admin: redis at {_shown(redis_url)}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    if stats is None:
        print(f"streams-admin: no group {group!r} on stream {stream!r}", file=sys.stderr)
        return 1
    for name in ("length", "pending", "oldest_pending_idle_ms", "lag", "dlq_length", "consumers", "recreated"):
        print(f"{name:24} {getattr(stats, name)}")
    print(f"{'last_recreated':24} {_when(stats.last_recreated_ms)}")
    for name in ("reclaimed", "consumers_removed"):
        print(f"{name:24} {getattr(stats, name)}")
    return 0


def _shown(url: str) -> str:
    """``url`` fit for a message: its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "never"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.redis_url:
        print("streams-admin: give --redis-url or set REDIS_URL", file=sys.stderr)
        return 2
    if args.command == "stats":
        return asyncio.run(_stats(args.redis_url, args.stream, args.group))
    return run_dlq(args, args.redis_url)


if __name__ == "__main__":
    sys.exit(main())
