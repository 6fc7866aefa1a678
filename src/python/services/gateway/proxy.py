"""Forwarding a request to the service a route names, streaming large bodies both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from flotilla_http.client import HttpClient
from gateway.domain import request_headers_upstream, response_headers_downstream
from gateway.routes import Route

# Bodies up to this size are read whole and answered in one piece (cheaper for the many small
# JSON answers); larger or unsized ones are streamed through without being held in memory.
BUFFER_LIMIT = 256 * 1024


async def forward(
    client: HttpClient,
    route: Route,
    request: Request[Any, Any, Any],
    *,
    caller: tuple[str, frozenset[str]] | None,
    timeout: float,
) -> ASGIResponse:
    """Send ``request`` to ``route``'s service and relay its answer.

    Raises flotilla_http's UpstreamError subclasses (no instance, circuit open, connect failure,
    timeout), which the app turns into 502/503/504 problem details.
    """
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    path = route.upstream_raw_path(raw_path.decode("latin-1"), request.url.path)
    query = request.scope.get("query_string", b"")
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    headers = request_headers_upstream(
        ((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]),
        client_ip=request.client.host if request.client else None,
        scheme=request.url.scheme,
        host=request.headers.get("host"),
        caller=caller,
    )
    body = await _request_body(request)
    stream = client.stream(route.service, request.method, path, headers=headers, body=body, timeout=timeout)
    upstream = await stream.__aenter__()
    try:
        encoded = _encode(response_headers_downstream(upstream.headers))
        length = next((int(v) for k, v in upstream.headers if k.lower() == "content-length" and v.isdigit()), None)
        if length is not None and length <= BUFFER_LIMIT:
            content = b"".join([chunk async for chunk in upstream.iter_chunks()])
    except BaseException as exc:
        await stream.__aexit__(type(exc), exc, exc.__traceback__)
        raise
    if length is not None and length <= BUFFER_LIMIT:
        await stream.__aexit__(None, None, None)
        return ASGIResponse(body=content, status_code=upstream.status, encoded_headers=encoded)

    async def relay() -> AsyncIterator[bytes]:
        # Closed when the body is done or the caller goes away; either way the upstream is released.
        try:
            async for chunk in upstream.iter_chunks():
                yield chunk
        finally:
            await stream.__aexit__(None, None, None)

    return ASGIStreamingResponse(iterator=relay(), status_code=upstream.status, encoded_headers=encoded)


async def _request_body(request: Request[Any, Any, Any]) -> bytes | AsyncIterator[bytes] | None:
    if (
        request.method in ("GET", "HEAD", "OPTIONS", "DELETE")
        and not request.headers.get("content-length")
        and not request.headers.get("transfer-encoding")
    ):
        return None
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) <= BUFFER_LIMIT:
        return await request.body()  # replayable, so a connect failure can be retried
    return request.stream()  # enforces the body size limit as it reads


def _encode(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    # Raw pairs keep repeated headers (set-cookie); the server computes the length of what we send.
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() != "content-length"]
