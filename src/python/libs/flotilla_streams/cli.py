"""The ``dlq`` command every service PEX gets: list, show and replay dead-lettered entries.

catalog.pex dlq list orders.events [--count 20]
catalog.pex dlq show orders.events 1732540000000-0
catalog.pex dlq replay orders.events 1732540000000-0 [...]   |   --all
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from flotilla_kit.cli import Command


def configure_dlq(parser: argparse.ArgumentParser) -> None:
    """Add the dlq actions (list, show, replay) to ``parser``."""
    actions = parser.add_subparsers(dest="dlq_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list dead-lettered entries of a stream")
    listing.add_argument("stream", help="the original stream, e.g. orders.events")
    listing.add_argument("--count", type=int, default=20)
    show = actions.add_parser("show", help="show one dead-lettered entry whole")
    show.add_argument("stream")
    show.add_argument("id", help="the entry's id in the dead-letter stream")
    replay = actions.add_parser("replay", help="put entries back on their stream")
    replay.add_argument("stream")
    replay.add_argument("ids", nargs="*", help="dead-letter ids to replay")
    replay.add_argument("--all", action="store_true", help="replay every entry of the stream's DLQ")


def run_dlq(args: argparse.Namespace, redis_url: str) -> int:
    """Run the parsed dlq action against ``redis_url``; returns the exit code."""
    return asyncio.run(_dispatch(args, redis_url))


def _run_in_service(args: argparse.Namespace, settings: Any) -> int:
    if not settings.redis_url:
        print("dlq: REDIS_URL is not set", file=sys.stderr)
        return 2
    return run_dlq(args, settings.redis_url)


async def _dispatch(args: argparse.Namespace, redis_url: str) -> int:
    from redis.exceptions import RedisError

    from flotilla_redis.factory import create_redis
    from flotilla_streams import dlq

    client = create_redis(redis_url)
    try:
        if args.dlq_action == "list":
            entries = await dlq.list_entries(client, args.stream, count=args.count)
            for e in entries:
                print(f"{e.id}  {_when(e.failed_at_ms)}  group={e.group} deliveries={e.deliveries}  {e.reason[:120]}")
            print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} shown")
            return 0
        if args.dlq_action == "show":
            entry = await dlq.get_entry(client, args.stream, args.id)
            if entry is None:
                print(f"dlq: no entry {args.id!r} in {dlq.dlq_stream(args.stream)}", file=sys.stderr)
                return 1
            print(f"id:          {entry.id}\nstream:      {entry.stream} (entry {entry.original_id})")
            print(f"group:       {entry.group} (consumer {entry.consumer})\ndeliveries:  {entry.deliveries}")
            print(f"failed at:   {_when(entry.failed_at_ms)}\nreason:      {entry.reason}")
            for name, value in entry.fields.items():
                print(f"{name.decode(errors='replace')}: {value.decode(errors='replace')}")
            return 0
        ids = [e.id for e in await dlq.list_entries(client, args.stream, count=1_000_000)] if args.all else args.ids
        if not ids:
            print("dlq: name the ids to replay, or --all", file=sys.stderr)
            return 2
        replayed = await dlq.replay(client, args.stream, ids)
        missing = sorted(set(ids) - set(replayed))
        print(f"replayed {len(replayed)} entr{'y' if len(replayed) == 1 else 'ies'} onto {args.stream}")
        if missing:
            print(f"dlq: not found, not replayed: {', '.join(missing)}", file=sys.stderr)
            return 1
        return 0
    except RedisError as exc:
        print(f"dlq: redis error: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else "?"


dlq_command = Command(
    name="dlq", help="list, show and replay dead-lettered stream entries", configure=configure_dlq, run=_run_in_service
)
