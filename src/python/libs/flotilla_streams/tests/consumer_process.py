"""A consumer in its own process, for the kill -9 test: python -m flotilla_streams.tests.consumer_process URL DB NAME."""

from __future__ import annotations

import asyncio
import sys

from flotilla_kit.db import Database
from flotilla_streams.connection import create_redis
from flotilla_streams.consumer import ConsumerOptions, StreamConsumer
from flotilla_streams.tests.events import STREAM, recording_handlers


async def main(redis_url: str, database_url: str, name: str) -> None:
    handlers = recording_handlers()
    (event_class, handler) = next(iter(handlers.by_type.values()))

    async def slow_record(event, ctx):  # slow enough to be killed in the middle of a batch
        await asyncio.sleep(0.002)
        await handler(event, ctx)

    handlers.by_type = {key: (event_class, slow_record) for key in handlers.by_type}
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
