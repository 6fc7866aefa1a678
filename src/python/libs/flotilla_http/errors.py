"""Errors of calls to other services, each with the HTTP status a server answers its own caller with.

A server maps any ``UpstreamError`` to problem details with ``error.http_status``; nothing here
depends on the web framework. ``InvalidRequest`` is the caller's mistake, found before anything is
sent: no upstream is involved, and a server answers it as its own 400 (or refuses such input first).
``RequestBodyTimeout`` is the caller's too (its body too slow to come): a server answers it 408.
"""

from __future__ import annotations

from flotilla_discovery.instance import Instance


class InvalidRequest(ValueError):
    """The client refuses to write this request (a bad method, path or header); nothing was sent."""


class InvalidHeader(InvalidRequest):
    """A header name that is not a token, or a value holding CR, LF or NUL (RFC 9110), which could end
    the header early and smuggle another header or request upstream. ``name`` is the header's name
    as given (latin-1 decoded)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"header {name!r}: {problem}")
        self.name = name


class RequestBodyTimeout(Exception):
    """The call's deadline passed while waiting on the caller's own streamed request body.

    The caller's fault, not the upstream's (hence not an UpstreamError): a server answers its
    caller with ``http_status`` (408 Request Timeout). ``service`` is the service being called.
    """

    http_status: int = 408

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class UpstreamError(Exception):
    """A call to ``service`` failed without an HTTP answer to return."""

    http_status: int = 502

    def __init__(self, service: str, message: str, *, instance: Instance | None = None) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.instance = instance  # the last instance tried, when one was


class NoHealthyInstance(UpstreamError):
    """Discovery knows no instance of the service that may be called (the NoInstances is the cause)."""

    http_status = 503


class CircuitOpen(UpstreamError):
    """The service's circuit is open: the call failed fast, nothing was sent.

    ``retry_after`` is the number of seconds until a probe may be let through (for a Retry-After header).
    """

    http_status = 503

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(service, f"circuit open, next probe in {retry_after:.1f}s")
        self.retry_after = retry_after


class UpstreamConnectError(UpstreamError):
    """No answer because connecting failed, or the connection broke before a whole answer arrived."""

    http_status = 502


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer (or finish its answer) before the call's deadline."""

    http_status = 504


class DeadlineExceeded(UpstreamError):
    """The call's deadline had passed before it could be sent (nothing was sent)."""

    http_status = 504
