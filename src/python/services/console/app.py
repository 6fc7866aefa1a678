"""Builds the console's Litestar app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import msgspec
from console.actions import ActionsController
from console.api import STATIC_DIRECTORY, ConsoleApi, IngestController, index
from console.auth import login_page, login_with_link, login_with_token, logout
from console.instances import InstanceProber
from console.sessions import MIN_SECRET_BYTES, Sessions, secret_bytes
from console.settings import ConsoleSettings
from litestar import Litestar
from litestar.static_files import create_static_files_router

from flotilla_kit.app import create_service_app
from flotilla_kit.calls import service_calls
from flotilla_kit.info import read_version
from flotilla_kit.settings import SettingsError
from flotilla_kit.tokens import KeyConfigError, TokenVerifier
from orders_client import OrdersClient

VERSION = read_version("console")


@contextlib.asynccontextmanager
async def _prober(app: Litestar) -> AsyncIterator[None]:
    """The instance prober (its HTTP client and the previous samples it turns into rates)."""
    settings: ConsoleSettings = app.state.settings
    app.state.action_lock = asyncio.Lock()
    app.state.orders = OrdersClient(app.state.http)
    async with httpx.AsyncClient(timeout=settings.console_probe_timeout_seconds) as http:
        app.state.prober = (
            InstanceProber(app.state.redis, http, namespace=settings.console_discovery_namespace)
            if app.state.redis is not None
            else None
        )
        yield


def _doors(settings: ConsoleSettings) -> tuple[Sessions, TokenVerifier]:
    """The console's sessions and its operators' token verifier; SettingsError names what is unusable."""
    problems: list[str] = []
    if settings.console_secret and len(settings.console_secret.encode()) < MIN_SECRET_BYTES:
        problems.append(f"CONSOLE_SECRET: at least {MIN_SECRET_BYTES} characters (it signs sessions)")
    try:
        verifier = TokenVerifier(
            public_key_file=settings.jwt_public_key_file,
            jwks_file=settings.jwks_file,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    except KeyConfigError as exc:
        problems.append(str(exc))
    if problems:
        raise SettingsError(problems)
    sessions = Sessions(
        secret_bytes(settings.console_secret),
        session_seconds=settings.console_session_seconds,
        link_seconds=settings.console_login_link_seconds,
    )
    return sessions, verifier


def login_url(settings: ConsoleSettings, sessions: Sessions) -> str:
    """A one-time login link to this console."""
    return f"http://{settings.host}:{settings.port}/login?token={sessions.link_token()}"


def create_app(settings: ConsoleSettings) -> Litestar:
    # The console does not trace itself: pointed at itself, each export would be one more span to
    # export, for ever; its own traffic is the pages' polling, of no interest in the trace view.
    settings = msgspec.structs.replace(settings, otel_sdk_disabled=True)
    sessions, verifier = _doors(settings)

    @contextlib.asynccontextmanager
    async def doors(app: Litestar) -> AsyncIterator[None]:
        app.state.sessions, app.state.token_verifier = sessions, verifier
        if not settings.console_secret:
            # No secret given (the console on its own): this start's secret, and a way in for whoever
            # reads the log, as Aspire's dashboard does.
            logging.getLogger("console").warning(
                "no CONSOLE_SECRET: log in with this one-time link: %s", login_url(settings, sessions)
            )
        yield

    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[
            IngestController,
            ConsoleApi,
            ActionsController,
            login_page,
            login_with_link,
            login_with_token,
            logout,
            index,
            create_static_files_router(path="/static", directories=[STATIC_DIRECTORY], include_in_schema=False),
        ],
        migrations="console.migrations",
        components=[doors, service_calls(), _prober],  # _prober after service_calls: it needs app.state.http
    )
