"""Outermost ASGI layer: request id, trace context and HTTP metrics for every request.

It wraps Litestar's whole handler (not a route's), so requests that match no route (404, 405)
get ids, traces and metrics too; and it turns a request body that ends early into a 400.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from flotilla_http.context import (
    DEADLINE_HEADER,
    accept_request_id,
    deadline_var,
    new_trace,
    parse_deadline_header,
    parse_traceparent,
    request_id_var,
    trace_var,
)
from flotilla_http.metrics import method_label
from flotilla_kit.metrics import ServiceMetrics
from flotilla_kit.problems import BadRequest

if TYPE_CHECKING:
    from flotilla_kit.tracing import ServerSpans

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"
TRACEPARENT_HEADER = b"traceparent"
DEADLINE_HEADER_BYTES = DEADLINE_HEADER.encode()
_UNMATCHED_ROUTE = "<unmatched>"


class IncompleteRequestBody(BadRequest):
    """The request body ended before its framing said it would: a malformed chunk, or the caller left.

    Raised by ``receive`` (as wrapped by RequestContextMiddleware) instead of handing over the
    server's ``http.disconnect`` while the body is still being read, so every reader of bodies
    (Litestar's, the gateway's relay) answers 400, the caller's fault, and not 500.
    """

    type_name = "incomplete-body"


class RequestContextMiddleware:
    """Sets the request's context; with ``spans`` (tracing on) each request is a SERVER span too,
    whose ids are the request's trace context (flotilla_kit.tracing)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, spans: ServerSpans | None = None) -> None:
        self.app = app
        self.stats = metrics.http
        self.spans = spans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]  # type: ignore[typeddict-item]  # an http scope, checked above
        incoming_request_id = incoming_traceparent = incoming_deadline = None
        has_body = False
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming_request_id = value.decode("latin-1")
            elif name == TRACEPARENT_HEADER:
                incoming_traceparent = value.decode("latin-1")
            elif name == DEADLINE_HEADER_BYTES:
                incoming_deadline = value
            elif name == b"content-length" or name == b"transfer-encoding":
                has_body = True
        request_id = accept_request_id(incoming_request_id)
        parent = parse_traceparent(incoming_traceparent)
        spans = self.spans
        if spans is None:
            span = span_token = None
            trace = parent.child() if parent else new_trace()
        else:
            span, trace, span_token = spans.start(method, parent)
        request_id_token = request_id_var.set(request_id)
        trace_token = trace_var.set(trace)
        # The caller's deadline bounds every call this request makes to other services.
        deadline_token = deadline_var.set(parse_deadline_header(incoming_deadline))
        response_headers = [
            (REQUEST_ID_HEADER, request_id.encode("latin-1")),
            (TRACEPARENT_HEADER, trace.traceparent.encode("latin-1")),
        ]
        status = 0  # 0 until the response starts

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *response_headers]
            await send(message)

        if has_body:  # only then: this layer is on every request's path, and most have no body
            receive = _WholeBodyReceiver(receive, method, scope["path"], lambda: status != 0)

        stats = self.stats
        stats.in_flight += 1
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_with_context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - started
            stats.in_flight -= 1
            route = _route_label(scope)
            stats.finished(method_label(method), route, status or 500, elapsed)
            if span is not None:
                assert spans is not None and span_token is not None
                matched = route if route != _UNMATCHED_ROUTE else None
                spans.finish(span, span_token, scope, matched, status or 500, error)
            request_id_var.reset(request_id_token)
            trace_var.reset(trace_token)
            deadline_var.reset(deadline_token)


class _WholeBodyReceiver:
    """``receive`` for a request with a body: a disconnect before the body is whole, and before the
    answer has started, is IncompleteRequestBody.

    granian hands over http.disconnect both for a malformed chunk and for a caller that closed
    mid-body; Litestar calls that a 500. Before the answer has started it can only mean a body cut
    short: the caller's fault, so a 400 (a gone caller never sees it). Once the answer has started,
    a disconnect reaches the app as usual (a streaming answer listens for its caller leaving).
    """

    __slots__ = ("_receive", "_method", "_path", "_answer_started", "_received", "_whole")

    def __init__(self, receive: Receive, method: str, path: str, answer_started: Callable[[], bool]) -> None:
        self._receive = receive
        self._method = method
        self._path = path
        self._answer_started = answer_started
        self._received = 0
        self._whole = False

    async def __call__(self) -> ReceiveMessage:
        message = await self._receive()
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            self._whole = not message.get("more_body", False)
        elif message["type"] == "http.disconnect" and not self._whole and not self._answer_started():
            log.info(
                "request body incomplete: malformed chunked framing, or the caller closed the connection",
                extra={"method": self._method, "path": self._path, "body_bytes_received": self._received},
            )
            raise IncompleteRequestBody(
                f"the request body ended after {self._received} bytes, before its framing said it would"
            )
        return message


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
