"""What protects a path under ``/api/``: who may call it, which rate limit it counts against, and
(for every path alike) which methods may carry a body.

A route of the table is a policy itself; a composed endpoint (a Litestar handler of the gateway's
own) has an ``EdgePolicy``. The edge applies one (``Gateway.admit``) and the merged OpenAPI
document describes one (``gateway.openapi``): both read this one definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Methods whose requests carry no content (RFC 9110 9.3.1-9.3.7: content on them has no defined
# meaning). A body on one is refused at the edge, before it costs a token check, a rate-limit permit
# or an upstream connection (which a caller could otherwise break, at will, mid-body). The answer is
# 413, as for any body over its limit: what these methods accept is zero bytes. A Content-Length of
# 0 is accepted; Transfer-Encoding is refused whatever it would bring, as the body is not read.
BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


class Policy(Protocol):
    """The protection of a path under /api/: a route of the table, or a composed endpoint's ``EdgePolicy``."""

    @property
    def auth(self) -> str:  # "public", "user" or "role:<name>", as in the route table
        ...

    @property
    def rate_limit(self) -> str:  # a class of RATE_LIMITS
        ...


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """The policy of a composed endpoint (routes of the table are policies themselves)."""

    auth: str
    rate_limit: str
