"""One OpenAPI document for everything the gateway routes, merged from the services' own."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamError
from flotilla_kit.openapi import PROBLEM_SCHEMA_NAME
from flotilla_kit.problems import PROBLEM_MEDIA_TYPE
from gateway.policy import BODILESS_METHODS, Policy
from gateway.routes import API_PREFIX, Route, required_role

log = logging.getLogger(__name__)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SCHEMA_REF = "#/components/schemas/"
PROBLEM_REF = _SCHEMA_REF + PROBLEM_SCHEMA_NAME
BEARER_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


class UnprotectedEndpoint(ValueError):
    """A path of the gateway's own under /api/ that no composed policy covers: the edge would relay
    it as a route (and find none), so the endpoint could never be called. A bug of the gateway's."""


@dataclass(frozen=True)
class EdgeProblem:
    status: int
    # Why the gateway answers it, for an operation (method, and the service's operation as
    # documented) under a policy; None: the gateway does not answer it there.
    description: Callable[[Policy, str, dict[str, Any]], str | None]
    headers: dict[str, Any] | None = None


def _unauthorized(policy: Policy, _method: str, _operation: dict[str, Any]) -> str:
    if policy.auth == "public":
        return "A bearer token was sent and is invalid or expired (a call without one is anonymous)."
    return "The bearer token is missing, invalid or expired (`WWW-Authenticate` says which)."


def _too_large(_policy: Policy, method: str, _operation: dict[str, Any]) -> str:
    # Gateway.admit: any body on a method that takes none, and a body over the limit on the others
    # (whether or not the service documents one).
    if method.upper() in BODILESS_METHODS:
        return "The request has a body, which this method does not take."
    return "The request body is over the gateway's size limit."


# The problems the gateway answers itself on a routed operation; 405 (a method no route takes) is
# answered for paths, not documented per operation.
EDGE_PROBLEMS: tuple[EdgeProblem, ...] = (
    EdgeProblem(400, lambda _, __, ___: "The gateway refused a malformed request (path, headers or body framing)."),
    EdgeProblem(
        401,
        _unauthorized,
        {"WWW-Authenticate": {"description": "Why the token was refused (RFC 6750).", "schema": {"type": "string"}}},
    ),
    EdgeProblem(
        403, lambda p, _, __: f"The token lacks role {required_role(p.auth)!r}." if required_role(p.auth) else None
    ),
    EdgeProblem(
        404,
        lambda _, __, op: (
            "The path names nothing the gateway routes."
            if any(p.get("in") == "path" for p in op.get("parameters", ()))
            else None
        ),
    ),
    EdgeProblem(413, _too_large),
    EdgeProblem(
        429,
        lambda p, _, __: f"The caller is over the rate limit of class {p.rate_limit!r}.",
        {"Retry-After": {"description": "Seconds until a retry can succeed.", "schema": {"type": "integer"}}},
    ),
    EdgeProblem(502, lambda _, __, ___: "The service failed to answer properly."),
    EdgeProblem(
        503, lambda _, __, ___: "No instance of the service can be reached, or the gateway is starting or stopping."
    ),
    EdgeProblem(504, lambda _, __, ___: "The service did not answer in time."),
)
# Statuses whose meaning through the gateway is the gateway's alone, whatever the service documents.
_GATEWAY_DECIDES = frozenset({401, 403, 429})


class MergedOpenApi:
    """Builds the merged document on demand and caches it for ``cache_seconds``."""

    def __init__(
        self,
        client: HttpClient,
        routes: Sequence[Route],
        *,
        version: str,
        cache_seconds: float,
        timeout: float,
        own_document: dict[str, Any],
        composed: Mapping[str, Policy],
    ) -> None:
        """``composed``: the policies of the gateway's own (composed) endpoints, by path prefix.

        Raises UnprotectedEndpoint when ``own_document`` has a path under /api/ that no prefix of
        ``composed`` covers.
        """
        self.client = client
        self.routes = routes
        self.version = version
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.own_document = _prefix_refs(own_document, "gateway")
        self.composed = dict(composed)
        # Each composed operation's policy, found once: a path without one fails here, at start-up.
        self._own_policies = {
            path: self._composed_policy(path)
            for path in self.own_document.get("paths", {})
            if path.startswith(API_PREFIX)
        }
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            document = await self._build()
            self._cached = (time.monotonic(), document)
            return document

    async def _build(self) -> dict[str, Any]:
        services = sorted({route.service for route in self.routes})
        fetched = await asyncio.gather(*(self._fetch(service) for service in services))
        docs = {service: doc for service, doc in zip(services, fetched, strict=True) if doc is not None}
        own_schemas = self.own_document.get("components", {}).get("schemas", {})
        schemas: dict[str, Any] = {_merged_name(name, "gateway"): schema for name, schema in own_schemas.items()}
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": "flotilla API", "version": self.version},
            "paths": {},
            "components": {"schemas": schemas, "securitySchemes": {"bearer": BEARER_SCHEME}},
        }
        missing = sorted(set(services) - set(docs))
        if missing:
            merged["info"]["x-unavailable-services"] = missing
        for service, doc in docs.items():
            for name, schema in doc.get("components", {}).get("schemas", {}).items():
                # Every service answers problems with the kit's schema: one copy serves them all.
                schemas.setdefault(_merged_name(name, service), _prefix_refs(schema, service))
        for path, item in self.own_document.get("paths", {}).items():
            item = copy.deepcopy(item)
            for method, operation in item.items():
                if method in _METHODS and path in self._own_policies:
                    _add_edge_problems(operation, method, self._own_policies[path])
            merged["paths"][path] = item
        for route in self.routes:
            if route.service not in docs:
                continue
            for upstream_path, item in docs[route.service].get("paths", {}).items():
                public = _public_path(route, upstream_path)
                if public is None:
                    continue
                target = merged["paths"].setdefault(public, {})
                for method, operation in item.items():
                    if method not in _METHODS or (route.methods and method.upper() not in route.methods):
                        continue
                    if method in target:
                        continue  # served by a composed endpoint, or by a route of a longer prefix (first here)
                    operation = _prefix_refs(copy.deepcopy(operation), route.service)
                    operation["operationId"] = f"{route.service}_{operation.get('operationId', method + public)}"
                    _add_edge_problems(operation, method, route)
                    target[method] = operation
        merged["paths"] = {path: item for path, item in sorted(merged["paths"].items()) if item}
        return merged

    def _composed_policy(self, path: str) -> Policy:
        prefixes = [prefix for prefix in self.composed if path.startswith(prefix)]
        if not prefixes:
            raise UnprotectedEndpoint(
                f"the gateway's own endpoint {path} is under {API_PREFIX} but no composed policy covers it"
                " (add its prefix to gateway.api.COMPOSED)"
            )
        return self.composed[max(prefixes, key=len)]

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            response = await self.client.request(service, "GET", "/schema/openapi.json", timeout=self.timeout)
        except UpstreamError as exc:
            log.warning("no OpenAPI document from %s: %s", service, exc)
            return None
        if response.status != 200:
            log.warning("no OpenAPI document from %s: HTTP %d", service, response.status)
            return None
        document: dict[str, Any] = response.json()
        return document


def _public_path(route: Route, upstream_path: str) -> str | None:
    base = route.upstream_prefix.rstrip("/")
    if upstream_path != base and not upstream_path.startswith(base + "/"):
        return None
    return route.prefix.rstrip("/") + upstream_path[len(base) :] or route.prefix


def _add_edge_problems(operation: dict[str, Any], method: str, policy: Policy) -> None:
    """Document on ``operation`` (of ``method``) the problems the gateway itself answers before or instead of the service."""
    responses = operation.setdefault("responses", {})
    operation["security"] = [{"bearer": []}] if policy.auth != "public" else [{}, {"bearer": []}]
    for problem in EDGE_PROBLEMS:
        description = problem.description(policy, method, operation)
        if description is None:
            continue
        documented = responses.get(str(problem.status))
        if documented and problem.status not in _GATEWAY_DECIDES:
            description = f"{documented.get('description', '')} {description}".strip()
        responses[str(problem.status)] = {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
            **({"headers": problem.headers} if problem.headers else {}),
        }
    operation["responses"] = dict(sorted(responses.items()))


def _merged_name(name: str, service: str) -> str:
    return name if name == PROBLEM_SCHEMA_NAME else f"{service}_{name}"


def _prefix_refs(node: Any, service: str) -> Any:
    """Point ``#/components/schemas/X`` references at the merged, service-prefixed names (but the shared problem)."""
    if isinstance(node, dict):
        return {
            key: (
                _SCHEMA_REF + _merged_name(value.removeprefix(_SCHEMA_REF), service)
                if key == "$ref" and isinstance(value, str) and value.startswith(_SCHEMA_REF)
                else _prefix_refs(value, service)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_prefix_refs(item, service) for item in node]
    return node
