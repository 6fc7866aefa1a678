"""The context of a call carried across hops (request id, W3C trace context, deadline) in contextvars.

flotilla_kit's middleware sets it for each incoming request; its logs read it to tag every line;
``HttpClient`` and the stream publisher read it to forward it on outgoing calls and events. It
lives here, in the lowest lib that needs it, so that a client pulls in no service runtime.
"""

from __future__ import annotations

import random
import re
import time
from contextvars import ContextVar
from typing import NamedTuple

from opentelemetry.trace import SpanContext, TraceFlags

DEADLINE_HEADER = "x-deadline-ms"

request_id_var: ContextVar[str | None] = ContextVar("flotilla_request_id", default=None)
trace_var: ContextVar[TraceContext | None] = ContextVar("flotilla_trace", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class TraceContext(NamedTuple):
    """W3C trace context of the current span (https://www.w3.org/TR/trace-context/)."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """A new span in the same trace, for an outgoing call or a handled request."""
        return TraceContext(self.trace_id, _random_hex(64), self.flags)


def _random_hex(bits: int) -> str:
    # Ids for correlation, not secrets: the random module's generator is reseeded in every forked
    # worker and, unlike secrets, costs no system call (there are three ids per request).
    # Never all zeros, which W3C forbids; to_bytes().hex() is 4x faster than a format string.
    return (random.getrandbits(bits) or 1).to_bytes(bits // 8, "big").hex()


def new_request_id() -> str:
    return _random_hex(128)


def accept_request_id(value: str | None) -> str:
    """The caller's request id when it is a sane token, else a fresh one (ids end up in logs)."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def parse_traceparent(value: str | None) -> TraceContext | None:
    """Parse a traceparent header; None when absent or invalid (the spec says: start a new trace)."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceContext(trace_id, span_id, flags)


def new_trace() -> TraceContext:
    return TraceContext(_random_hex(128), _random_hex(64))


# Absolute time.monotonic() deadline of the request being handled, or None when it has none.
deadline_var: ContextVar[float | None] = ContextVar("flotilla_deadline", default=None)

# Longer than any sane request; also keeps float conversion of absurd header values bounded.
_MAX_HEADER_MS = 24 * 3600 * 1000


def remaining() -> float | None:
    """Seconds left before the current request's deadline (0.0 once passed), or None without one."""
    deadline = deadline_var.get()
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def parse_deadline_header(value: str | bytes | None) -> float | None:
    """The absolute ``time.monotonic()`` deadline an ``x-deadline-ms`` value means, counted from now.

    The value is the remaining milliseconds as a non-negative integer ("0" means already expired).
    Returns None for a missing or invalid value (not a plain integer, or longer than a day): the
    server then applies its own timeout, as if the caller had sent none.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    milliseconds = int(value)
    if milliseconds > _MAX_HEADER_MS:
        return None
    return time.monotonic() + milliseconds / 1000


def span_context_of(trace: TraceContext) -> SpanContext:
    """An OpenTelemetry remote span context from a parsed ``traceparent``."""
    return SpanContext(
        int(trace.trace_id, 16), int(trace.span_id, 16), is_remote=True, trace_flags=TraceFlags(int(trace.flags, 16))
    )


def trace_context_of(span_context: SpanContext) -> TraceContext:
    """The ``trace_var`` value (and ``traceparent``) of an OpenTelemetry span."""
    return TraceContext(
        format(span_context.trace_id, "032x"),
        format(span_context.span_id, "016x"),
        format(span_context.trace_flags, "02x"),
    )
