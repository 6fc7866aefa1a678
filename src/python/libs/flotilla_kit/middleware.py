"""Outermost ASGI layer: request id, trace context and HTTP metrics for every request.

It wraps Litestar's whole handler (not a route's), so requests that match no route (404, 405)
get ids, traces and metrics too.
"""

from __future__ import annotations

import time
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from flotilla_kit.context import (
    DEADLINE_HEADER,
    accept_request_id,
    deadline_var,
    new_trace,
    parse_deadline_header,
    parse_traceparent,
    request_id_var,
    trace_var,
)
from flotilla_kit.metrics import ServiceMetrics, method_label

REQUEST_ID_HEADER = b"x-request-id"
TRACEPARENT_HEADER = b"traceparent"
DEADLINE_HEADER_BYTES = DEADLINE_HEADER.encode()
_UNMATCHED_ROUTE = "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.stats = metrics.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_request_id = incoming_traceparent = incoming_deadline = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming_request_id = value.decode("latin-1")
            elif name == TRACEPARENT_HEADER:
                incoming_traceparent = value.decode("latin-1")
            elif name == DEADLINE_HEADER_BYTES:
                incoming_deadline = value
        request_id = accept_request_id(incoming_request_id)
        parent = parse_traceparent(incoming_traceparent)
        trace = parent.child() if parent else new_trace()
        request_id_token = request_id_var.set(request_id)
        trace_token = trace_var.set(trace)
        # The caller's deadline bounds every call this request makes to other services.
        deadline_token = deadline_var.set(parse_deadline_header(incoming_deadline))
        response_headers = [
            (REQUEST_ID_HEADER, request_id.encode("latin-1")),
            (TRACEPARENT_HEADER, trace.traceparent.encode("latin-1")),
        ]
        status = 500

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *response_headers]
            await send(message)

        stats = self.stats
        stats.in_flight += 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_context)
        finally:
            elapsed = time.perf_counter() - started
            stats.in_flight -= 1
            method = method_label(scope["method"])  # type: ignore[typeddict-item]  # an http scope, checked above
            stats.finished(method, _route_label(scope), status, elapsed)
            request_id_var.reset(request_id_token)
            trace_var.reset(trace_token)
            deadline_var.reset(deadline_token)


def _route_label(scope: Any) -> str:
    # The template ("/products/{product_id:uuid}"), never the raw path: raw paths would give
    # every id its own time series.
    return scope.get("path_template") or _UNMATCHED_ROUTE


class HeadAsGet:
    """Answers HEAD wherever GET is served (RFC 9110 9.3.2): the GET's status and headers, no body.

    Litestar routes HEAD only to handlers declared for it; this layer runs HEAD requests as GETs
    and drops the body on the way out, keeping its Content-Length.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":  # type: ignore[typeddict-item]
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_without_body)  # type: ignore[arg-type]
