"""The baseline a gateway is compared with: a bare aiohttp proxy written as a Litestar handler.

No auth, no rate limit, no discovery, no breaker: one shared aiohttp session forwarding GETs to
``UPSTREAM_URL``. Served by granian exactly as the services are (one worker, uvloop, st).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from litestar import Litestar, Request, Response, get


@get("/{path:path}", sync_to_thread=False)
async def forward(request: Request[Any, Any, Any], path: str) -> Response[bytes]:
    session: aiohttp.ClientSession = request.app.state.session
    async with session.get(request.app.state.upstream + path) as upstream:
        body = await upstream.read()
        return Response(body, status_code=upstream.status, media_type=upstream.headers.get("content-type"))


def create_app() -> Litestar:
    @asynccontextmanager
    async def session(app: Litestar) -> AsyncIterator[None]:
        app.state.upstream = os.environ["UPSTREAM_URL"].rstrip("/")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512)) as client:
            app.state.session = client
            yield

    return Litestar(route_handlers=[forward], lifespan=[session])
