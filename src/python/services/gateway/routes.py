"""The route table: which public paths go to which service, with which protection.

Loaded from a TOML file of ``[[routes]]`` entries::

    [[routes]]
    prefix = "/api/catalog/products"   # public path prefix
    service = "catalog"                  # upstream service, found by discovery
    upstream_prefix = "/products"        # what the prefix becomes upstream
    methods = ["GET"]                    # optional; all methods when absent
    auth = "public"                      # "public", "user" (any valid token) or "role:<name>"
    rate_limit = "default"               # a class of RATE_LIMITS
    timeout = 5.0                        # seconds, optional

The longest matching prefix whose methods include the request's wins.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import msgspec

_PREFIX = r"^/[A-Za-z0-9._~/-]*$"
# RFC 3986 pchar without "%": what a path segment may hold unencoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

# Paths of the services' own operational and internal endpoints: never reachable from outside,
# whatever the route table says.
_INTERNAL = re.compile(r"^/(metrics|healthz|readyz|info|schema|internal)(/|$)")


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    prefix: Annotated[str, msgspec.Meta(pattern=_PREFIX)]
    service: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$")]
    upstream_prefix: Annotated[str, msgspec.Meta(pattern=_PREFIX)] = "/"
    methods: frozenset[str] | None = None
    auth: Annotated[str, msgspec.Meta(pattern=r"^(public|user|role:[A-Za-z0-9_-]+)$")] = "user"
    rate_limit: str = "default"
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def upstream_path(self, path: str) -> str:
        """``path`` (decoded or percent-encoded alike) with this route's prefix replaced upstream."""
        rest = path[len(self.prefix) :]
        base = self.upstream_prefix.rstrip("/")
        if rest and not rest.startswith("/"):
            rest = "/" + rest
        return (base + rest) or "/"

    def upstream_raw_path(self, raw_path: str, path: str) -> str:
        """The percent-encoded path to send upstream, from the one the caller sent.

        The caller's encoding is kept (``%3F`` must stay a character of a segment, not become a
        query); only a caller who encoded characters of the prefix itself gets the rest re-encoded.
        """
        if raw_path.startswith(self.prefix):
            return self.upstream_path(raw_path)
        return self.upstream_path(self.prefix + quote(path[len(self.prefix) :], safe=_PATH_SAFE))

    @property
    def required_role(self) -> str | None:
        return required_role(self.auth)


def required_role(auth: str) -> str | None:
    """The role an ``auth`` setting ("public", "user", "role:<name>") asks for, if any."""
    return auth.removeprefix("role:") if auth.startswith("role:") else None


class RouteTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    routes: list[Route]


class RouteError(ValueError):
    """The route table cannot be used; the message names the file and the problem."""


def load_routes(path: str = "") -> list[Route]:
    """Read and check a route table; empty ``path`` reads the gateway's own routes.toml."""
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise RouteError(f"ROUTES_FILE={path!r}: {exc.strerror}") from None
    else:
        path = "routes.toml (built in)"
        text = (resources.files("gateway") / "routes.toml").read_text()
    try:
        table = msgspec.convert(tomllib.loads(text), RouteTable)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise RouteError(f"{path}: {exc}") from None
    routes = [
        msgspec.structs.replace(r, methods=frozenset(m.upper() for m in r.methods) if r.methods else None)
        for r in table.routes
    ]
    # Longest prefix first, so that the most specific route is found first.
    return sorted(routes, key=lambda r: len(r.prefix), reverse=True)


def match(routes: Sequence[Route], method: str, path: str) -> Route | None:
    """The route for ``method path``; None when no route covers it."""
    for route in routes:
        if not _under(path, route.prefix):
            continue
        if route.methods is None or method in route.methods or (method == "HEAD" and "GET" in route.methods):
            return route
    return None


def methods_allowed(routes: Sequence[Route], path: str) -> set[str]:
    """Methods some route allows on ``path`` (for 405 answers)."""
    allowed: set[str] = set()
    for route in routes:
        if _under(path, route.prefix):
            allowed |= route.methods or {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
    return allowed


def is_internal(upstream_path: str) -> bool:
    """A path never routed: the services' operational endpoints, or one with dot segments (which
    the upstream would resolve into some other path than the one the route table allowed)."""
    segments = upstream_path.split("/")
    return bool(_INTERNAL.match(upstream_path)) or "." in segments or ".." in segments


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
