"""A consumer in its own process, for the kill -9 test: python -m flotilla_streams.tests.consumer_process URL DB NAME."""

from __future__ import annotations

import asyncio
import sys

from flotilla_kit.db import Database
from flotilla_redis.factory import create_redis
from flotilla_streams.consumer import ConsumerOptions, StreamConsumer
from flotilla_streams.tests.events import STREAM, recording_handlers

STALL_AFTER = 350


async def main(redis_url: str, database_url: str, name: str) -> None:
    handlers = recording_handlers()
    event_class, handler = next(iter(handlers.by_type.values()))

    calls = 0
    never = asyncio.Event()

    async def stalling_record(event, ctx):
        # Stalls for good in the middle of its fourth batch (of 100): three are committed, one is
        # half handled, whenever the test's kill -9 lands.
        nonlocal calls
        calls += 1
        if calls > STALL_AFTER:
            await never.wait()
        await handler(event, ctx)

    handlers.by_type = {key: (event_class, stalling_record) for key in handlers.by_type}
    consumer = StreamConsumer(
        create_redis(redis_url),
        group="g",
        consumer=name,
        streams=[STREAM],
        handlers=handlers,
        db=Database(database_url),
        options=ConsumerOptions(batch_size=100, block_ms=50),
    )
    await consumer.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
