"""The console's doors: who a request comes from (bearer JWT or session cookie), and logging in and out."""

from __future__ import annotations

import hmac
import html
import time
from typing import Annotated, Any, cast

import msgspec
import sqlalchemy as sa
from console.models import LoginLink, RevokedSession
from console.sessions import CSRF_HEADER, LINK_OPERATOR, SESSION_COOKIE, InvalidToken, Operator, Sessions
from console.settings import ConsoleSettings
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.handlers.base import BaseRouteHandler
from litestar.params import Body, JSONBody, QueryParameter
from litestar.response import Redirect

from flotilla_kit.db import Database, insert_unless_conflicting
from flotilla_kit.identity import ADMIN_ROLE
from flotilla_kit.openapi import problem_responses
from flotilla_kit.problems import BadRequest, Forbidden, Unauthorized
from flotilla_kit.tokens import TokenRejected, TokenVerifier

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_links = cast(sa.Table, LoginLink.__table__)
_revoked = cast(sa.Table, RevokedSession.__table__)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flotilla-console"'}


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Operator:
    """The operator behind a request: 401 without one; 403 for a caller without an operator role, or
    a cookie session's change without its CSRF token."""
    authorization = connection.headers.get("authorization")
    if authorization:
        verifier: TokenVerifier = connection.app.state.token_verifier
        if not verifier.configured:
            raise Unauthorized("this console has no key for bearer tokens (JWT_PUBLIC_KEY_FILE or JWKS_FILE)")
        try:
            caller = verifier.verify(authorization)
        except TokenRejected as exc:
            raise Unauthorized(exc.reason, headers=_CHALLENGE) from None
        return _operator_only(connection, Operator(caller.id, caller.roles, expires_at=caller.expires_at))
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise Unauthorized(
            "log in first: open the login link that `stack up` printed, or send a bearer token", headers=_CHALLENGE
        )
    sessions: Sessions = connection.app.state.sessions
    try:
        operator = sessions.read_session(cookie)
    except InvalidToken as exc:
        raise Unauthorized(f"{exc}: log in again", headers=_CHALLENGE) from None
    db: Database = connection.app.state.db
    revoked = await db.fetch_all(sa.select(_revoked.c.session_id).where(_revoked.c.session_id == operator.session_id))
    if revoked:
        raise Unauthorized("this session was logged out: log in again", headers=_CHALLENGE)
    if connection.scope.get("method", "GET") not in _SAFE_METHODS:
        given = connection.headers.get(CSRF_HEADER, "")
        if not (given and operator.csrf and hmac.compare_digest(given.encode(), operator.csrf.encode())):
            raise Forbidden(f"a change from a session must carry its {CSRF_HEADER} header (see /api/config)")
    return _operator_only(connection, operator)


def _operator_only(connection: ASGIConnection[Any, Any, Any, Any], operator: Operator) -> Operator:
    allowed = operator_roles(connection.app.state.settings)
    if not operator.roles & allowed:
        raise Forbidden(f"the console is for operators: a caller needs one of the roles {', '.join(sorted(allowed))}")
    return operator


def operator_roles(settings: ConsoleSettings) -> frozenset[str]:
    return frozenset(role.strip() for role in settings.console_roles.split(",") if role.strip())


async def require_operator(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every console API: the request's operator, kept in its state for the handlers."""
    connection.state.operator = await authenticate(connection)


def operator_of(request: Request[Any, Any, Any]) -> Operator:
    operator: Operator = request.state.operator
    return operator


def require_admin(operator: Operator, action: str) -> None:
    if ADMIN_ROLE not in operator.roles:
        raise Forbidden(f"{action} needs role '{ADMIN_ROLE}'")


class SessionView(msgspec.Struct, kw_only=True):
    caller: str
    roles: list[str]
    # Repeat it in X-CSRF-Token on every change; null for a bearer token (no cookie, no CSRF).
    csrf: str | None
    expires_at: float | None


class JwtLogin(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]


def session_view(operator: Operator) -> SessionView:
    return SessionView(
        caller=operator.id, roles=sorted(operator.roles), csrf=operator.csrf, expires_at=operator.expires_at
    )


def _with_cookie(request: Request[Any, Any, Any], response: Response[Any], value: str, expires_at: float) -> None:
    settings: ConsoleSettings = request.app.state.settings
    max_age = max(0, int(expires_at - time.time()))
    response.set_cookie(
        Cookie(
            key=SESSION_COOKIE,
            value=value,
            httponly=True,
            samesite="strict",
            # Plain http on loopback (``stack up``) must work; behind TLS the cookie never leaves it (a
            # proxy that ends TLS: CONSOLE_COOKIE_SECURE).
            secure=settings.console_cookie_secure or request.url.scheme == "https",
            path="/",
            max_age=max_age,
        )
    )


class LinkLogin(msgspec.Struct, kw_only=True):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


_LINK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Log in to the Flotilla console</title>
<link rel="stylesheet" href="static/console.css"></head>
<body><main><h2>Log in to the Flotilla console</h2>
<p>This one-time link logs in one browser, once.</p>
<form method="post" action="/login/link"><input type="hidden" name="token" value="{token}">
<button id="login-link" type="submit">Log in</button></form></main></body></html>
"""


@get("/login", include_in_schema=False, sync_to_thread=False)
def login_page(token: Annotated[str, QueryParameter(min_length=1, max_length=4096)]) -> Response[str]:
    """The login link's page: a button that redeems the link. A GET never redeems it, so a link
    preview, a HEAD or a prefetch does not use up the one-time link."""
    return Response(
        _LINK_PAGE.format(token=html.escape(token, quote=True)),
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


@post(
    "/login/link",
    include_in_schema=False,
    responses=problem_responses({401: "The link is forged, expired or already used."}),
)
async def login_with_link(
    request: Request[Any, Any, Any],
    db: NamedDependency[Database],
    data: Annotated[LinkLogin, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Redirect:
    """Redeem a one-time login link: a session as ``console-login`` (admin), then the console's page."""
    sessions: Sessions = request.app.state.sessions
    try:
        nonce, expires = sessions.read_link(data.token)
    except InvalidToken as exc:
        raise Unauthorized(f"this login link cannot be used: {exc}") from None
    now = time.time()
    async with db.transaction() as session:
        await session.execute(sa.delete(_links).where(_links.c.expires_at < now))
        used = await session.scalar(sa.select(sa.func.count()).where(_links.c.nonce == nonce))
        if used:
            raise Unauthorized(
                "this login link was used already: ask `stack login` (or the console's log) for a new one"
            )
        await session.execute(sa.insert(_links).values(nonce=nonce, expires_at=expires, used_at=now))
    value, operator = sessions.start(LINK_OPERATOR, frozenset({ADMIN_ROLE}))
    response = Redirect("/", status_code=303)
    _with_cookie(request, response, value, operator.expires_at or now)
    return response


@post("/login", status_code=200, responses=problem_responses({401: "The token is not acceptable."}))
async def login_with_token(request: Request[Any, Any, Any], data: JSONBody[JwtLogin]) -> Response[SessionView]:
    """Trade a JWT (the gateway's) for a session cookie that lasts until the token expires at the latest."""
    verifier: TokenVerifier = request.app.state.token_verifier
    if not verifier.configured:
        raise Unauthorized("this console has no key for tokens (JWT_PUBLIC_KEY_FILE or JWKS_FILE): use a login link")
    try:
        caller = verifier.verify(f"Bearer {data.token}")
    except TokenRejected as exc:
        raise Unauthorized(exc.reason) from None
    _operator_only(request, Operator(caller.id, caller.roles))
    sessions: Sessions = request.app.state.sessions
    try:
        value, operator = sessions.start(caller.id, caller.roles, not_after=caller.expires_at)
    except InvalidToken as exc:
        raise BadRequest(str(exc)) from None
    response = Response(session_view(operator))
    _with_cookie(request, response, value, operator.expires_at or time.time())
    return response


@post("/logout", status_code=204, guards=[require_operator])
async def logout(request: Request[Any, Any, Any], db: NamedDependency[Database]) -> Response[None]:
    """End this browser's session: its cookie is refused from now on, and cleared."""
    operator = operator_of(request)
    if operator.session_id:
        now = time.time()
        async with db.transaction() as session:
            await session.execute(sa.delete(_revoked).where(_revoked.c.expires_at < now))
            await session.execute(
                insert_unless_conflicting(session, _revoked, on=["session_id"]),
                [{"session_id": operator.session_id, "expires_at": operator.expires_at or now}],
            )
    response = Response(None, status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
