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

Every decision is taken on the path as the service will see it: the ASGI server has decoded the
target once (``%2f`` is a ``/`` by then) and the service's router collapses empty segments
(``//metrics`` is ``/metrics`` to Litestar), so the relay matches routes and checks for internal
endpoints on ``normalise(path)``, and sends upstream a target that decodes to exactly that path.
``decide`` is that decision, whole: the relay calls it, and the tests call the same function.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import msgspec

from flotilla_kit.problems import MethodNotAllowed, NotFound

# Public paths under it are the API: relayed by the route table, or served by composed endpoints.
API_PREFIX = "/api/"
_PREFIX = r"^/[A-Za-z0-9._~/-]*$"
# RFC 3986 pchar without "%": what a path segment may hold unencoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

# Paths of the services' own operational and internal endpoints: never reachable from outside,
# whatever the route table says.
_INTERNAL = re.compile(r"^/(metrics|healthz|readyz|info|schema|internal)(/|$)")
_EMPTY_SEGMENTS = re.compile(r"//+")


def normalise(path: str) -> str:
    """A decoded path as a service's router sees it: empty segments collapsed (``//a`` is ``/a``),
    rooted (``a`` is ``/a``), as Litestar's ``normalize_path`` does.

    Dot segments stay (``is_internal`` refuses them): resolving them would route to another path
    than the one the caller named.
    """
    if "//" in path:
        path = _EMPTY_SEGMENTS.sub("/", path)
    return path if path.startswith("/") else "/" + path


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    prefix: Annotated[str, msgspec.Meta(pattern=_PREFIX)]
    service: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$")]
    upstream_prefix: Annotated[str, msgspec.Meta(pattern=_PREFIX)] = "/"
    methods: frozenset[str] | None = None
    auth: Annotated[str, msgspec.Meta(pattern=r"^(public|user|role:[A-Za-z0-9_-]+)$")] = "user"
    rate_limit: str = "default"
    timeout: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def upstream_path(self, path: str) -> str:
        """``path`` (decoded or percent-encoded alike, normalised) with this route's prefix replaced upstream."""
        rest = path[len(self.prefix) :]
        base = self.upstream_prefix.rstrip("/")
        if rest and not rest.startswith("/"):
            rest = "/" + rest
        return (base + rest) or "/"

    def upstream_raw_path(self, raw_path: str, path: str) -> str:
        """The percent-encoded path to send upstream, from the one the caller sent (``raw_path``) and
        its decoded, normalised form (``path``, which this route matched).

        The caller's encoding is kept (``%3F`` must stay a character of a segment, not become a
        query) when it decodes to ``path`` itself; a caller who encoded characters of the prefix,
        or whose target holds empty segments (``//``, ``%2f``), gets ``path`` re-encoded, so the
        service sees the very path the route table was asked about.
        """
        if raw_path.startswith(self.prefix) and not _may_hold_empty_segments(raw_path):
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


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a routed request goes: its route, and the percent-encoded path to send upstream (no query)."""

    route: Route
    target: str


def decide(routes: Sequence[Route], method: str, raw_path: str, path: str) -> Decision:
    """The route for ``method`` on a path and the target to send upstream, decided on the path as
    the service will see it.

    ``raw_path`` is the path as the caller sent it (percent-encoded, latin-1 text); ``path`` the same
    decoded once, as the ASGI server hands it over (normalised here). Raises NotFound when no route
    covers the path, or when the service would see one of its internal endpoints or dot segments
    there; MethodNotAllowed, with ``Allow``, when routes cover the path but not ``method``.
    """
    path = normalise(path)
    route = match(routes, method, path)
    if route is None:
        allowed = methods_allowed(routes, path)
        if allowed:
            raise MethodNotAllowed(
                f"{method} is not routed for {raw_path}", headers={"Allow": ", ".join(sorted(allowed))}
            )
        raise NotFound(f"no route for {raw_path}")
    if is_internal(route.upstream_path(path)):
        raise NotFound(f"no route for {raw_path}")
    return Decision(route, route.upstream_raw_path(raw_path, path))


def is_internal(upstream_path: str) -> bool:
    """A decoded upstream path never routed: the services' operational endpoints (empty segments
    collapsed, as the service's router does), or one with dot segments (which the upstream could
    resolve into some other path than the one the route table allowed)."""
    upstream_path = normalise(upstream_path)
    segments = upstream_path.split("/")
    return bool(_INTERNAL.match(upstream_path)) or "." in segments or ".." in segments


def _may_hold_empty_segments(raw_path: str) -> bool:
    # Substring tests: on the relay's path, and several times cheaper than a regular expression.
    return "//" in raw_path or ("%2" in raw_path and ("%2f" in raw_path or "%2F" in raw_path))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
