"""The routed API: ``/api/<service>/...`` relayed to the service's instances, over raw ASGI.

Every call a client makes through the gateway takes this path, so it runs outside Litestar, whose
routing, dependency injection and response objects cost more CPU per request than relaying does;
the kit's request-context layer around it still gives every request ids, traces, a deadline and
metrics. Answers up to ``BUFFER_LIMIT`` bytes are read whole and sent in one piece (the many small
JSON answers); larger or unsized ones, and large request bodies, stream through without being held.

Every request under ``/api/`` passes ``Gateway.admit`` (body framing, token, rate limit) first,
whether it is relayed or goes to a composed endpoint (a Litestar handler): the policy is applied
here, in one place, so a composed endpoint cannot forget it.

Where a request goes is decided by ``routes.decide``, on the path as the service will see it
(``routes.normalise``: empty segments collapsed, as Litestar does). An absolute-form target
(``GET http://host/path HTTP/1.1``) needs nothing of its own: granian puts only its path in the
scope (``path`` and ``raw_path`` are ``/path``, the scheme and authority are dropped), so it is
routed exactly as the origin form of the same path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
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

from flotilla_http.errors import InvalidRequest, RequestBodyTimeout, UpstreamError
from flotilla_kit.middleware import IncompleteRequestBody
from flotilla_kit.problems import BadRequest, ContentTooLarge, Problem, RequestTimeout, ServiceUnavailable, send_problem
from gateway import routes as routing
from gateway.core import Admission, Gateway, upstream_problem
from gateway.domain import public_problem, request_headers_upstream, response_headers_downstream
from gateway.policy import BODILESS_METHODS, Policy
from gateway.routes import API_PREFIX, Route

log = logging.getLogger(__name__)

BUFFER_LIMIT = 256 * 1024
# How much of a refused request's body is read and dropped, and for how long (discard_unread_body).
LINGER_BYTES = 4 * 1024 * 1024
LINGER_SECONDS = 2.0


class Relay:
    """Raw ASGI handler of routed requests; ``gateway`` is set once the gateway component has started."""

    def __init__(self) -> None:
        self.gateway: Gateway | None = None

    def wrap(self, litestar: ASGIApp, *, composed: Mapping[str, Policy]) -> ASGIApp:
        """An ASGI app that relays ``/api/...`` and leaves everything else to ``litestar``: the composed
        endpoints (under the prefixes of ``composed``) once their policy admitted the request."""
        composed_prefixes = tuple(composed)

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                # Litestar would route "//api/storefront/..." as "/api/storefront/...": so do we.
                path = routing.normalise(scope["path"])
                if path.startswith(API_PREFIX):
                    if not path.startswith(composed_prefixes):
                        await self._handle(cast(HTTPScope, scope), path, receive, send)
                        return
                    prefix = next(p for p in composed_prefixes if path.startswith(p))
                    if not await self._admit_composed(composed[prefix], cast(HTTPScope, scope), receive, send):
                        return
            await litestar(scope, receive, send)

        return dispatch

    async def _admit_composed(self, policy: Policy, scope: HTTPScope, receive: Receive, send: Send) -> bool:
        """Whether a request to a composed endpoint passes its policy; if not, it has been answered."""
        try:
            if self.gateway is None:
                raise ServiceUnavailable("the gateway is starting or stopping")
            admission = await self.gateway.admit(scope, policy)
        except Problem as exc:
            await send_problem(send, exc, instance=scope["path"])
            await discard_unread_body(scope, receive)
            return False
        # For handlers that need the caller: request.state.caller (None when anonymous).
        scope.setdefault("state", {})["caller"] = admission.caller
        return True

    async def __call__(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        await self._handle(scope, routing.normalise(scope["path"]), receive, send)

    async def _handle(self, scope: HTTPScope, path: str, receive: Receive, send: Send) -> None:
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._relay(scope, path, receive, send_tracked)
        except Exception as exc:
            if started:
                raise  # mid-body: only a broken connection tells the caller the answer is cut short
            await send_problem(send, problem_of(exc, scope), instance=scope["path"])

    async def _relay(self, scope: HTTPScope, path: str, receive: Receive, send: Send) -> None:
        """Relay a request whose path, normalised as its service will see it, is ``path``."""
        gateway = self.gateway
        if gateway is None:
            raise ServiceUnavailable("the gateway is starting or stopping")
        method = scope["method"]
        raw_path = scope.get("raw_path")
        caller_path = raw_path.decode("latin-1") if raw_path else scope["path"]
        try:
            decision = routing.decide(gateway.routes, method, caller_path, path)
            route = decision.route
            scope["path_template"] = route.prefix + "/{path}"  # bounded metric labels
            admission = await gateway.admit(scope, route)
        except Problem as refused:
            await send_problem(send, refused, instance=scope["path"])
            await discard_unread_body(scope, receive)
            return
        timeout = route.timeout or gateway.upstream_timeout
        body = await _request_body(method, admission, receive, gateway.max_body_bytes, timeout)
        await self._forward(gateway, route, scope, caller_path, decision.target, body, admission, timeout, send)

    async def _forward(
        self,
        gateway: Gateway,
        route: Route,
        scope: HTTPScope,
        caller_path: str,
        target: str,
        body: bytes | AsyncIterator[bytes] | None,
        admission: Admission,
        timeout: float,
        send: Send,
    ) -> None:
        query = scope.get("query_string", b"")
        if query:
            target = f"{target}?{query.decode('latin-1')}"
        caller = admission.caller
        upstream_headers = request_headers_upstream(
            scope["headers"],
            client_ip=admission.client_ip,
            scheme=scope.get("scheme", "http"),
            caller=(caller.id, caller.roles) if caller else None,
        )
        async with gateway.client.stream(
            route.service,
            scope["method"],
            target,
            headers=upstream_headers,
            body=body,
            timeout=timeout,
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
                    content = public_problem(content, answer_headers, instance=caller_path)
                answer_headers.append((b"content-length", str(len(content)).encode()))
                await send(_start(upstream.status, answer_headers))
                await send(_body(content, more=False))
                return
            await send(_start(upstream.status, answer_headers))
            async for chunk in upstream.iter_chunks():
                await send(_body(chunk, more=True))
            await send(_body(b"", more=False))


async def _request_body(
    method: str, admission: Admission, receive: Receive, limit: int, timeout: float
) -> bytes | AsyncIterator[bytes] | None:
    """The body to relay: None or b"" when there is none, bytes when small, else a stream.

    Framing and size were checked by Gateway.admit; a streamed body is held to the limit as it
    comes, and to the route's timeout by the HTTP client. A small body is read whole before the
    call (replayable: an attempt whose connect failed can be retried), within the same timeout:
    a caller trickling it byte by byte gets 408, instead of holding a task and a connection open.
    """
    size = admission.content_length
    if not size and not admission.chunked:
        return None if method in BODILESS_METHODS else b""
    if size is not None and size <= BUFFER_LIMIT:
        try:
            async with asyncio.timeout(timeout):
                return b"".join([chunk async for chunk in _receive_body(receive, limit)])
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {timeout:g}s") from None
    return _receive_body(receive, limit)


async def _receive_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, held to ``limit`` bytes.

    A body cut short (a malformed chunk, the caller gone) is IncompleteRequestBody, raised by the
    kit's request-context layer in ``receive`` itself; the HTTP client hands it back as the
    caller's failure, which never counts against the upstream. A disconnect can only reach here
    when that layer is not in front: it is the same failure, and must never end a body as if whole.
    """
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise IncompleteRequestBody(
                f"the request body ended after {received} bytes, before its framing said it would"
            )
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        received += len(chunk)
        if received > limit:
            raise ContentTooLarge(f"the request body is over the limit of {limit} bytes")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def discard_unread_body(scope: HTTPScope, receive: Receive) -> None:
    """Read and drop the body of a request refused before its body was read (a lingering close).

    The server closes a connection whose request body was left unread; closed with bytes still
    unread in the kernel, the connection is reset, and a reset can make the caller's system drop
    the refusal it was just sent (the caller sees "connection closed without an answer" instead of
    413 or 401). nginx lingers for the same reason. Bounded: bodies declared over LINGER_BYTES are
    not read at all, and none for longer than LINGER_SECONDS.
    """
    declared = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = int(value) if value.isdigit() else LINGER_BYTES + 1
        elif name == b"transfer-encoding":
            declared = max(declared, 1)
    if not declared or declared > LINGER_BYTES:
        return
    read = 0
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while read <= LINGER_BYTES:
                message = await receive()
                read += len(message.get("body", b""))  # type: ignore[arg-type]
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return
    except Exception:  # noqa: S110 - the caller has its answer; whatever ends the reading ends it
        pass


def _start(status: int, headers: RawHeaders) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(body: bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": body, "more_body": more}


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


def problem_of(exc: Exception, scope: HTTPScope) -> Problem:
    """The problem to answer a relayed request with, for what ended it before its answer started."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, UpstreamError):
        return upstream_problem(exc)
    if isinstance(exc, RequestBodyTimeout):
        # The caller's body did not come in time: its fault (408), not the upstream's (504).
        return RequestTimeout("the request body did not arrive in time")
    if isinstance(exc, InvalidRequest):
        # The caller's request cannot be written upstream as it is (a path with controls or raw
        # non-ASCII bytes, a header name that is not a token): nothing was sent, and the client's
        # message says what. Any other ValueError is a bug of ours, and a 500 below.
        return BadRequest(str(exc))
    # The body never carries internals; the log line (with the same request id) does.
    log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"), exc_info=exc)
    return Problem("An unexpected error occurred.")
