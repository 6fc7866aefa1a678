"""Builds the console's Litestar app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import msgspec
from console.api import STATIC_DIRECTORY, ConsoleApi, IngestController, index
from console.instances import InstanceProber
from console.settings import ConsoleSettings
from litestar import Litestar
from litestar.static_files import create_static_files_router

from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version

VERSION = read_version("console")


@contextlib.asynccontextmanager
async def _prober(app: Litestar) -> AsyncIterator[None]:
    """The instance prober (its HTTP client and the previous samples it turns into rates)."""
    settings: ConsoleSettings = app.state.settings
    app.state.replay_lock = asyncio.Lock()
    async with httpx.AsyncClient(timeout=settings.console_probe_timeout_seconds) as http:
        app.state.prober = (
            InstanceProber(app.state.redis, http, namespace=settings.console_discovery_namespace)
            if app.state.redis is not None
            else None
        )
        yield


def create_app(settings: ConsoleSettings) -> Litestar:
    # The console does not trace itself: pointed at itself, each export would be one more span to
    # export, for ever; its own traffic is the pages' polling, of no interest in the trace view.
    settings = msgspec.structs.replace(settings, otel_sdk_disabled=True)
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[
            IngestController,
            ConsoleApi,
            index,
            create_static_files_router(path="/static", directories=[STATIC_DIRECTORY], include_in_schema=False),
        ],
        migrations="console.migrations",
        components=[_prober],
    )
