"""One OpenAPI document for everything the gateway routes, merged from the services' own."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

from flotilla_http.client import HttpClient
from flotilla_http.errors import UpstreamError
from gateway.routes import Route

log = logging.getLogger(__name__)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


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
    ) -> None:
        self.client = client
        self.routes = routes
        self.version = version
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self.own_document = _prefix_refs(own_document, "gateway")
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
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": "flotilla API", "version": self.version},
            "paths": copy.deepcopy(self.own_document.get("paths", {})),
            "components": {
                "schemas": {
                    f"gateway_{name}": schema
                    for name, schema in self.own_document.get("components", {}).get("schemas", {}).items()
                },
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }
        missing = sorted(set(services) - set(docs))
        if missing:
            merged["info"]["x-unavailable-services"] = missing
        for service, doc in docs.items():
            for name, schema in doc.get("components", {}).get("schemas", {}).items():
                merged["components"]["schemas"][f"{service}_{name}"] = _prefix_refs(schema, service)
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
                    operation = _prefix_refs(copy.deepcopy(operation), route.service)
                    operation["operationId"] = f"{route.service}_{operation.get('operationId', method + public)}"
                    if route.auth != "public":
                        operation["security"] = [{"bearer": []}]
                        operation.setdefault("responses", {}).setdefault(
                            "401", {"description": "Missing or invalid token"}
                        )
                    operation.setdefault("responses", {}).setdefault("429", {"description": "Rate limit exceeded"})
                    target[method] = operation
        merged["paths"] = {path: item for path, item in sorted(merged["paths"].items()) if item}
        return merged

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


def _prefix_refs(node: Any, service: str) -> Any:
    """Point ``#/components/schemas/X`` references at the merged, service-prefixed names."""
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/components/schemas/", f"#/components/schemas/{service}_")
                if key == "$ref" and isinstance(value, str)
                else _prefix_refs(value, service)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_prefix_refs(item, service) for item in node]
    return node
