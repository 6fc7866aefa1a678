"""Calls to other services: one pooled HttpClient per process, on the app's resolver.

    app = create_service_app(settings, ..., components=[service_calls()])
    # handlers and components then use app.state.http (a flotilla_http.HttpClient), e.g. through
    # a typed client: CatalogClient(app.state.http)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from litestar import Litestar

from flotilla_discovery.balancer import Balancer
from flotilla_http.client import HttpClient
from flotilla_kit.app import Component


def service_calls(*, timeout_seconds: float = 5.0) -> Component:
    """A component that opens ``app.state.http`` with the service's discovery and closes it on stop.

    ``timeout_seconds`` is each call's budget, retries included, unless a call gives its own (a
    call made while serving a request also stops at that request's deadline).
    """

    @contextlib.asynccontextmanager
    async def component(app: Litestar) -> AsyncIterator[None]:
        http = HttpClient(
            Balancer(app.state.resolver),
            default_timeout=timeout_seconds,
            metrics_registry=app.state.metrics.registry,
        )
        await http.start()
        app.state.http = http
        try:
            yield
        finally:
            await http.close()

    return component
