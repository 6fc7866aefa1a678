"""RFC 9457 problem details for every error a service returns.

Libraries and services raise ``Problem`` subclasses (or Litestar's HTTP exceptions); the handlers
installed by the app factory turn each into an ``application/problem+json`` response that carries
the request id, so a client's report can be matched to the server's logs.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap, HTTPResponseBodyEvent, HTTPResponseStartEvent, Send

from flotilla_http.context import request_id_var
from flotilla_kit.methods import allow_header

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://flotilla.dev/problems/"


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """The response body (RFC 9457); ``errors`` lists field errors of a validation problem."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    """An error with an HTTP status and a stable problem type; subclass per kind of failure."""

    status: int = 500
    type_name: str = "internal-error"

    def __init__(
        self, detail: str, *, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers


class BadRequest(Problem):
    status, type_name = 400, "bad-request"


class Unauthorized(Problem):
    status, type_name = 401, "unauthorized"


class Forbidden(Problem):
    status, type_name = 403, "forbidden"


class NotFound(Problem):
    status, type_name = 404, "not-found"


class MethodNotAllowed(Problem):
    status, type_name = 405, "method-not-allowed"


class RequestTimeout(Problem):
    status, type_name = 408, "request-timeout"


class Conflict(Problem):
    status, type_name = 409, "conflict"


class ContentTooLarge(Problem):
    status, type_name = 413, "content-too-large"


class UnsupportedMediaType(Problem):
    status, type_name = 415, "unsupported-media-type"


class Unprocessable(Problem):
    status, type_name = 422, "unprocessable"


class TooManyRequests(Problem):
    status, type_name = 429, "too-many-requests"


class BadGateway(Problem):
    status, type_name = 502, "bad-gateway"


class ServiceUnavailable(Problem):
    status, type_name = 503, "service-unavailable"


class GatewayTimeout(Problem):
    status, type_name = 504, "gateway-timeout"


def problem_details(
    status: int,
    *,
    instance: str,
    type_name: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> ProblemDetails:
    """The body of a problem answer with ``status`` about ``instance`` (a path), with the request id."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = type_name or phrase.lower().replace(" ", "-").replace("'", "")
    return ProblemDetails(
        type=PROBLEM_TYPE_BASE + slug,
        title=phrase,
        status=status,
        detail=detail,
        instance=instance,
        request_id=request_id_var.get(),
        errors=errors,
    )


def problem_response(
    request: Request[Any, Any, Any],
    status: int,
    *,
    type_name: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ProblemDetails]:
    body = problem_details(status, instance=request.url.path, type_name=type_name, detail=detail, errors=errors)
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


async def send_problem(send: Send, problem: Problem, *, instance: str) -> None:
    """Answer with ``problem`` over raw ASGI, for handlers that run outside Litestar (the gateway's relay)."""
    body = msgspec.json.encode(
        problem_details(
            problem.status, instance=instance, type_name=problem.type_name, detail=problem.detail, errors=problem.errors
        )
    )
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (problem.headers or {}).items()
    ]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": problem.status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def _problem_handler(request: Request[Any, Any, Any], exc: Problem) -> Response[ProblemDetails]:
    return problem_response(
        request, exc.status, type_name=exc.type_name, detail=exc.detail, errors=exc.errors, headers=exc.headers
    )


def _validation_handler(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ProblemDetails]:
    # Litestar raises this both for unparsable bodies and for values that break the schema.
    errors = exc.extra if isinstance(exc.extra, list) else None
    return problem_response(request, 400, type_name="validation-error", detail=exc.detail, errors=errors)


def _http_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ProblemDetails]:
    if exc.status_code >= 500:
        log.error("server error: %s", exc.detail, exc_info=exc)
    if isinstance(exc.__cause__, SerializationException):
        detail = f"the request body could not be decoded: {exc.__cause__}"
        return problem_response(request, exc.status_code, type_name="malformed-body", detail=detail)
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and "allow" in headers:
        # Litestar lists the route's handlers' methods as registered, without HEAD (served by the kit).
        headers["Allow"] = allow_header(method.strip() for method in headers.pop("allow").split(","))
    return problem_response(request, exc.status_code, detail=exc.detail, headers=headers or None)


def _unexpected_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetails]:
    # The body never carries internals; the log line (with the same request id) does.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(request, 500, type_name="internal-error", detail="An unexpected error occurred.")


exception_handlers: ExceptionHandlersMap = {
    Problem: _problem_handler,
    ValidationException: _validation_handler,
    HTTPException: _http_handler,
    Exception: _unexpected_handler,
}
