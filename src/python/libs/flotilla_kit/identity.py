"""The caller's identity as the gateway forwards it, and guards that require a role.

The gateway verifies the caller's token and sets these headers, after dropping any copies the
caller sent; services trust them because only the gateway (and other services) can reach them.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from flotilla_kit.openapi import answers
from flotilla_kit.problems import Forbidden, Unauthorized

CALLER_ID_HEADER = "x-caller-id"
CALLER_ROLES_HEADER = "x-caller-roles"  # comma-separated


def caller_roles(connection: ASGIConnection[Any, Any, Any, Any]) -> frozenset[str]:
    raw = connection.headers.get(CALLER_ROLES_HEADER, "")
    return frozenset(role.strip() for role in raw.split(",") if role.strip())


def require_role(role: str) -> Any:
    """A Litestar guard: 401 without a caller identity, 403 when the caller lacks ``role``."""

    @answers(
        {
            401: "No authenticated caller (the gateway sets one from a valid token).",
            403: f"The caller lacks role {role!r}.",
        }
    )
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        if not connection.headers.get(CALLER_ID_HEADER):
            raise Unauthorized(f"this operation needs an authenticated caller with role {role!r}")
        if role not in caller_roles(connection):
            raise Forbidden(f"this operation needs role {role!r}")

    return guard
