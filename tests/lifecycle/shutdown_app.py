"""A service on the kit, as small as the shutdown test needs: a slow request, a consumer group
whose handler publishes through the outbox, and the kit's own ``serve`` (as every PEX runs it).

    python -m lifecycle.shutdown_app serve --port P

``GET /slow`` answers only once the file named by its ``release`` query parameter exists, so the
test decides when the in-flight request may finish (and says it has begun with ``<release>.started``). The "lifecycle" group reads ``lifecycle.in``
and, per ProductDeactivated, publishes one to ``lifecycle.out`` through the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Litestar, get

from flotilla_contracts.events import ProductDeactivated
from flotilla_kit.app import create_service_app
from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.settings import ServiceSettings
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import HandlerContext, Handlers
from flotilla_streams.outbox import Outbox
from flotilla_streams.schema import metadata as messaging_metadata

IN_STREAM = "lifecycle.in"
OUT_STREAM = "lifecycle.out"
GROUP = "lifecycle"
# Long enough for any test machine; the test releases the request well before.
SLOW_REQUEST_LIMIT_SECONDS = 60.0


@get("/slow")
async def slow(release: str) -> dict[str, str]:
    """Answers once the file ``release`` exists (polled: the test creates it from outside); creates
    ``<release>.started`` first, so the test knows the request is in flight."""
    Path(f"{release}.started").touch()  # a tiny local write: the event loop is not held up
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SLOW_REQUEST_LIMIT_SECONDS
    while not os.path.exists(release):
        if loop.time() > deadline:
            return {"status": "gave up"}
        await asyncio.sleep(0.01)
    return {"status": "finished"}


def _handlers() -> Handlers[Any]:
    handlers: Handlers[Any] = Handlers()

    @handlers.on(ProductDeactivated)
    async def forward(event: ProductDeactivated, ctx: HandlerContext) -> None:
        await ctx.publish(OUT_STREAM, event)

    return handlers


@contextlib.asynccontextmanager
async def _messaging_tables(app: Litestar) -> AsyncIterator[None]:
    # A real service creates them in an Alembic revision; this one has no migrations.
    async with app.state.db.engine.begin() as connection:
        await connection.run_sync(messaging_metadata.create_all)
    yield


def create_app(settings: ServiceSettings) -> Litestar:
    outbox = Outbox(source="lifecycle")
    return create_service_app(
        settings,
        version="0.0.0",
        route_handlers=[slow],
        components=[
            _messaging_tables,
            messaging(consumers=[ConsumerSpec(group=GROUP, streams=[IN_STREAM], handlers=_handlers())], outbox=outbox),
        ],
    )


SERVICE = ServiceDefinition(
    name="lifecycle", version="0.0.0", settings_class=ServiceSettings, create_app=create_app, default_port=8099
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
