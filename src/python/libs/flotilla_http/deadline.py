"""Deadlines carried across hops: the current request's deadline, and the header that carries it.

flotilla_kit's request middleware sets ``deadline_var`` from the incoming ``x-deadline-ms`` header
(``parse_deadline_header``); ``HttpClient`` then never waits past it and tells the next hop how
many milliseconds are left. Deadlines are absolute ``time.monotonic()`` values, which are only
meaningful inside one process: on the wire they travel as a remaining duration.
"""

from __future__ import annotations

import time

# The variable and the header's parsing live in flotilla_http.context, with the rest of a call's
# context; flotilla_kit's middleware sets it for every incoming request. Re-exported for callers.
from flotilla_http.context import DEADLINE_HEADER, deadline_var, parse_deadline_header, remaining

__all__ = [
    "DEADLINE_HEADER",
    "deadline_var",
    "effective_deadline",
    "header_value",
    "parse_deadline_header",
    "remaining",
]


def effective_deadline(timeout: float) -> float:
    """The absolute deadline of a call allowed ``timeout`` seconds, capped by the current request's."""
    deadline = time.monotonic() + timeout
    incoming = deadline_var.get()
    return deadline if incoming is None else min(deadline, incoming)


def header_value(deadline: float) -> str:
    """The ``x-deadline-ms`` value for ``deadline``: whole milliseconds left, rounded down."""
    return str(max(0, int((deadline - time.monotonic()) * 1000)))
