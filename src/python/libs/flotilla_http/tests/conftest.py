"""Real upstreams on loopback: granian serving a Litestar app in its own process, and aiohttp.web
servers in the test's process whose answers a test can switch and whose hits it can count."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.resolver import StaticResolver
from flotilla_http import HttpClient
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import serve_asgi

# The source root holding flotilla_http: `python -m granian` imports the app from there by name.
SOURCE_ROOT = Path(__file__).resolve().parents[2]


BOTH_LOOPS = pytest.mark.asyncio(loop_factories=["asyncio", "uvloop"])
"""Run a test on asyncio's loop and on uvloop's (which production runs: flotilla_kit.server)."""


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Tests marked BOTH_LOOPS run on both loops; the others on asyncio's alone."""
    marker = item.get_closest_marker("asyncio")
    if marker is not None and "loop_factories" in marker.kwargs:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


@pytest.fixture(scope="session")
def granian_upstream() -> Iterator[str]:
    """Base URL of upstream_app served by granian in a subprocess."""
    process = serve_asgi("flotilla_http.tests.upstream_app:create_app", free_port(), cwd=str(SOURCE_ROOT))
    yield process.base_url
    # In-flight /sleep requests need not finish: this process is ours alone.
    process.stop(timeout=5)


class Upstream:
    """An aiohttp.web server in this process; ``status`` is what /status answers, ``hits`` counts paths."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0  # seconds /status waits before answering
        self.hits: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/status", self._status)
        app.router.add_route("*", "/fixed/{code}", self._fixed)
        app.router.add_get("/repeats", self._repeats)
        # handler_cancellation: a handler whose client went away stops, so cleanup never waits on it.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> None:
        self.hits[request.path] += 1
        self.headers.append(dict(request.headers))
        self.bodies.append(await request.read())

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.delay:
            await asyncio.sleep(self.delay)  # the upstream being slow, not the test waiting
        return web.json_response({"from": self.url}, status=self.status)

    async def _fixed(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"from": self.url}, status=int(request.match_info["code"]))

    async def _repeats(self, request: web.Request) -> web.Response:
        await self._record(request)
        response = web.Response(body=b"ok")
        response.headers.add("x-repeat", "one")
        response.headers.add("x-repeat", "two")
        return response


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[[], Awaitable[Upstream]]]:
    """Start as many in-process upstreams as a test asks for; all stop after it."""
    started: list[Upstream] = []

    async def start() -> Upstream:
        upstream = Upstream()
        await upstream.start()
        started.append(upstream)
        return upstream

    yield start
    await asyncio.gather(*(upstream.stop() for upstream in started))


@pytest.fixture
def dead_url() -> Callable[[], str]:
    """Make loopback URLs where nothing listens: connecting is refused."""
    return lambda: f"http://127.0.0.1:{free_port()}"


class FakeClock:
    """A monotonic clock the test moves by hand (for breakers and retry budgets)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., Awaitable[HttpClient]]]:
    """Build a started HttpClient over static URLs (round robin, so instance order is predictable)."""
    clients: list[HttpClient] = []

    async def make(
        urls: dict[str, list[str]], *, balancer_options: dict[str, Any] | None = None, **options: Any
    ) -> HttpClient:
        balancer = Balancer(StaticResolver(urls), strategy="round_robin", **(balancer_options or {}))
        client = HttpClient(balancer, **options)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
