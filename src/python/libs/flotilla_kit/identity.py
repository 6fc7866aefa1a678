"""The caller's identity as the gateway forwards it: guards that require a caller or a role, and which
customer's items a caller may see.

The gateway verifies the caller's token and sets these headers, after dropping any copies the
caller sent; services trust them because only the gateway (and other services) can reach them.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from flotilla_kit.openapi import answers
from flotilla_kit.problems import BadRequest, Forbidden, Unauthorized

CALLER_ID_HEADER = "x-caller-id"
CALLER_ROLES_HEADER = "x-caller-roles"  # comma-separated
ADMIN_ROLE = "admin"
UNAUTHENTICATED = "No authenticated caller (the gateway sets one from a valid token)."


def caller_roles(connection: ASGIConnection[Any, Any, Any, Any]) -> frozenset[str]:
    raw = connection.headers.get(CALLER_ROLES_HEADER, "")
    return frozenset(role.strip() for role in raw.split(",") if role.strip())


def caller_id(
    connection: ASGIConnection[Any, Any, Any, Any], *, refusal: str = "this operation needs an authenticated caller"
) -> str:
    """The id of the caller the gateway authenticated.

    Raises Unauthorized (401, with ``refusal`` as its detail) when there is none. Call it where a
    guard does not fit (a guard runs before the parameters are validated); else guard with
    ``require_caller()``.
    """
    caller = connection.headers.get(CALLER_ID_HEADER)
    if not caller:
        raise Unauthorized(refusal)
    return caller


def require_caller(*, max_length: int | None = None) -> Any:
    """A Litestar guard: 401 without an authenticated caller; 400 when its id is longer than ``max_length``
    (a service that stores the id in a column of that width)."""

    @answers({401: UNAUTHENTICATED})
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        caller = caller_id(connection)
        if max_length is not None and len(caller) > max_length:
            raise BadRequest(f"the caller id is longer than {max_length} characters")

    return guard


def require_role(role: str) -> Any:
    """A Litestar guard: 401 without a caller identity, 403 when the caller lacks ``role``."""

    @answers({401: UNAUTHENTICATED, 403: f"The caller lacks role {role!r}."})
    def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        caller_id(connection, refusal=f"this operation needs an authenticated caller with role {role!r}")
        if role not in caller_roles(connection):
            raise Forbidden(f"this operation needs role {role!r}")

    return guard


def visible_customer(
    requested: str | None,
    caller: str,
    roles: frozenset[str],
    *,
    refusal: str = "a customer can see only their own items",
) -> str | None:
    """Whose items (orders, notifications...) the caller may see when asking for ``requested``'s.

    An admin sees any customer's: the one requested, or everyone's (None) when none is. A customer
    sees only their own: their id, when they name no one or themselves. Raises Forbidden (403, with
    ``refusal`` as its detail) when a customer names another customer.
    """
    if ADMIN_ROLE in roles:
        return requested
    if requested is not None and requested != caller:
        raise Forbidden(refusal)
    return caller
