"""An upstream for the tests, served by granian in its own process: echoes, sleeps and streams.

Run (from src/python/libs): python -m granian --interface asgi --factory flotilla_http.tests.upstream_app:create_app
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, Request, get, post, route
from litestar.response import Stream

CHUNK = b"0123456789abcdef" * 4096  # 64 KiB


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@route("/echo", http_method=["GET", "POST", "PUT"], status_code=200)
async def echo(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.body()
    return {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": [[name, value] for name, value in request.headers.items()],
        "body": body.decode(),
    }


@get("/sleep")
async def sleep(seconds: float) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@get("/bytes/{size:int}")
async def stream_bytes(size: int) -> Stream:
    async def chunks() -> AsyncIterator[bytes]:
        left = size
        while left > 0:
            piece = CHUNK[: min(left, len(CHUNK))]
            left -= len(piece)
            yield piece

    return Stream(chunks(), media_type="application/octet-stream", headers={"x-size": str(size)})


@post("/upload", status_code=200)
async def upload(request: Request[Any, Any, Any]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = chunks = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
        chunks += 1
    return {
        "size": size,
        "sha256": digest.hexdigest(),
        "chunks": chunks,
        "transfer_encoding": request.headers.get("transfer-encoding"),
    }


def create_app() -> Litestar:
    # The default 10 MB request limit is more than the tests send.
    return Litestar(route_handlers=[healthz, echo, sleep, stream_bytes, upload], debug=False)
