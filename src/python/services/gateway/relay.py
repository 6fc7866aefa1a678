"""The routed API: ``/api/<service>/...`` relayed to the service's instances, over raw ASGI.

Every call a client makes through the gateway takes this path, so it runs outside Litestar, whose
routing, dependency injection and response objects cost more CPU per request than relaying does;
the kit's request-context layer around it still gives every request ids, traces, a deadline and
metrics. Answers up to ``BUFFER_LIMIT`` bytes are read whole and sent in one piece (the many small
JSON answers); larger or unsized ones, and large request bodies, stream through without being held.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import cast

from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)
from litestar.types.asgi_types import RawHeaders

from flotilla_http.errors import UpstreamError
from flotilla_kit.problems import (
    BadRequest,
    ContentTooLarge,
    MethodNotAllowed,
    NotFound,
    Problem,
    ServiceUnavailable,
    send_problem,
)
from gateway import routes as routing
from gateway.core import Gateway, upstream_problem
from gateway.domain import public_problem, request_headers_upstream, response_headers_downstream
from gateway.routes import Route

log = logging.getLogger(__name__)

BUFFER_LIMIT = 256 * 1024
API_PREFIX = "/api/"
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class ClientGone(Exception):
    """The caller disconnected before its request body arrived whole."""


class Relay:
    """Raw ASGI handler of routed requests; ``gateway`` is set once the gateway component has started."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes
        self.gateway: Gateway | None = None

    def wrap(self, litestar: ASGIApp, *, composed_prefixes: tuple[str, ...]) -> ASGIApp:
        """An ASGI app that relays ``/api/...`` and leaves everything else (composed endpoints too) to ``litestar``."""

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            path = scope.get("path", "")
            if scope["type"] == "http" and path.startswith(API_PREFIX) and not path.startswith(composed_prefixes):
                await self(cast(HTTPScope, scope), receive, send)
            else:
                await litestar(scope, receive, send)

        return dispatch

    async def __call__(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        path = scope["path"]
        try:
            await self._relay(scope, receive, send_tracked)
        except ClientGone:
            return
        except Exception as exc:
            if started:
                raise  # mid-body: only a broken connection tells the caller the answer is cut short
            await send_problem(send, _problem(exc, scope), instance=path)

    async def _relay(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        gateway = self.gateway
        if gateway is None:
            raise ServiceUnavailable("the gateway is starting or stopping")
        method = scope["method"]
        path = scope["path"]
        route = routing.match(gateway.routes, method, path)
        if route is None:
            allowed = routing.methods_allowed(gateway.routes, path)
            if allowed:
                raise MethodNotAllowed(
                    f"{method} is not routed for {path}", headers={"Allow": ", ".join(sorted(allowed))}
                )
            raise NotFound(f"no route for {path}")
        if routing.is_internal(route.upstream_path(path)):
            raise NotFound(f"no route for {path}")
        scope["path_template"] = route.prefix + "/{path}"  # bounded metric labels
        headers = scope["headers"]
        authorization = content_length = None
        chunked = False
        for name, value in headers:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
        client = scope.get("client")
        client_ip = client[0] if client else None
        caller = gateway.authenticate(authorization, route.auth)
        await gateway.limit(route.rate_limit, client_ip, caller)
        body = await self._body(method, content_length, chunked, receive)
        identity = (caller.id, caller.roles) if caller else None
        await self._forward(gateway, route, scope, headers, body, client_ip, identity, send)

    async def _body(
        self, method: str, content_length: bytes | None, chunked: bool, receive: Receive
    ) -> bytes | AsyncIterator[bytes] | None:
        if content_length is None and not chunked:
            return None if method in _BODILESS_METHODS else b""
        if content_length is not None and not content_length.isdigit():
            raise BadRequest(f"content-length {content_length.decode('latin-1')!r} is not a number")
        size = int(content_length) if content_length is not None else None
        if size is not None and size > self.max_body_bytes:
            raise ContentTooLarge(f"the request body of {size} bytes is over the limit of {self.max_body_bytes}")
        if size is not None and size <= BUFFER_LIMIT:
            # Read whole: replayable, so an attempt whose connect failed can be retried.
            return b"".join([chunk async for chunk in self._receive_body(receive)])
        return self._receive_body(receive)

    async def _receive_body(self, receive: Receive) -> AsyncIterator[bytes]:
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            received += len(chunk)
            if received > self.max_body_bytes:
                raise ContentTooLarge(f"the request body is over the limit of {self.max_body_bytes} bytes")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def _forward(
        self,
        gateway: Gateway,
        route: Route,
        scope: HTTPScope,
        headers: RawHeaders,
        body: bytes | AsyncIterator[bytes] | None,
        client_ip: str | None,
        caller: tuple[str, frozenset[str]] | None,
        send: Send,
    ) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        target = route.upstream_raw_path(raw_path.decode("latin-1"), scope["path"])
        query = scope.get("query_string", b"")
        if query:
            target = f"{target}?{query.decode('latin-1')}"
        upstream_headers = request_headers_upstream(
            headers, client_ip=client_ip, scheme=scope.get("scheme", "http"), caller=caller
        )
        async with gateway.client.stream(
            route.service,
            scope["method"],
            target,
            headers=upstream_headers,
            body=body,
            timeout=route.timeout or gateway.upstream_timeout,
        ) as upstream:
            answer_headers = response_headers_downstream(upstream.raw_headers)
            length = _content_length(upstream.raw_headers)
            if scope["method"] == "HEAD" or upstream.status in (204, 304):
                # No body, whatever the headers say; HEAD keeps the length a GET would have.
                if length is not None and upstream.status not in (204, 304):
                    answer_headers.append((b"content-length", str(length).encode()))
                await send(_start(upstream.status, answer_headers))
                await send(_body(b"", more=False))
                return
            if length is not None and length <= BUFFER_LIMIT:
                content = await upstream.read()
                if upstream.status >= 400:
                    content = public_problem(content, answer_headers, instance=raw_path.decode("latin-1"))
                answer_headers.append((b"content-length", str(len(content)).encode()))
                await send(_start(upstream.status, answer_headers))
                await send(_body(content, more=False))
                return
            await send(_start(upstream.status, answer_headers))
            async for chunk in upstream.iter_chunks():
                await send(_body(chunk, more=True))
            await send(_body(b"", more=False))


def _start(status: int, headers: RawHeaders) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(body: bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": body, "more_body": more}


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


def _problem(exc: Exception, scope: HTTPScope) -> Problem:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, UpstreamError):
        return upstream_problem(exc)
    if isinstance(exc, ValueError):  # a path the HTTP client refuses to send (controls, bad escapes)
        return BadRequest(f"malformed path: {exc}")
    # The body never carries internals; the log line (with the same request id) does.
    log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return Problem("An unexpected error occurred.")
