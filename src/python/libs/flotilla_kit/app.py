"""The app factory every service builds its Litestar app with."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, ControllerRouterHandler, ExceptionHandlersMap
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from flotilla_kit.contract import HttpContract
from flotilla_kit.db import Database, DatabaseUnavailable
from flotilla_kit.discovery import check_discovery_settings, registration_component, resolver_component
from flotilla_kit.health import ReadinessCheck, internal_endpoints_of, operational_handlers
from flotilla_kit.internal import internal_endpoints
from flotilla_kit.metrics import ServiceMetrics
from flotilla_kit.middleware import HeadAsGet, RequestContextMiddleware
from flotilla_kit.migrations import migrate
from flotilla_kit.problems import ProblemDetails, exception_handlers, problem_response
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.shared_redis import shared_redis_component
from flotilla_kit.tracing import ServerSpans, Tracing, instrument_database, record_handler_exception, tracing_enabled

log = logging.getLogger(__name__)

# Something a service starts with the app and stops with it (a consumer, a relay, a client pool).
Component = Callable[[Litestar], AbstractAsyncContextManager[Any]]

DATABASE_RETRY_AFTER_SECONDS = 1


def _database_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[ProblemDetails]:
    # Transient and not the service's bug: 503, retry later, logged without a traceback.
    log.warning("database unavailable on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return problem_response(
        request,
        503,
        type_name="dependency-unavailable",
        detail="The service's database cannot be reached; retry later.",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


# Only a service with a database has these: the database layer raises DatabaseUnavailable for
# what it knows to be the database's absence (flotilla_kit.db), and the pool a TimeoutError when
# no connection is free in time. Any other error stays a 500 (flotilla_kit.problems).
_DATABASE_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DatabaseUnavailable: _database_unavailable,
    PoolTimeoutError: _database_unavailable,
}


def _provide_db(state: State) -> Database:
    return state.db


def _provide_settings(state: State) -> ServiceSettings:
    return state.settings


def create_service_app(
    settings: ServiceSettings,
    *,
    version: str,
    route_handlers: Sequence[ControllerRouterHandler],
    migrations: str | None = None,
    components: Sequence[Component] = (),
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    dependencies: Mapping[str, Provide] | None = None,
    database: bool = True,
    wrap_handler: Callable[[ASGIApp], ASGIApp] | None = None,
    internal_endpoints_public: bool = True,
) -> Litestar:
    """Build a service's Litestar app with the runtime every service shares.

    Start-up opens the database, applies ``migrations`` (the package of its Alembic env.py) when
    ``settings.migrate_on_start``, then enters ``components`` in order; shutdown leaves them in
    reverse order and closes the database. Handlers get ``db`` (Database) and ``settings`` injected.
    A service without state of its own (the gateway) passes ``database=False``; only a service with
    a database answers 503 (``dependency-unavailable``, with Retry-After) when the database cannot
    be reached (``flotilla_kit.db.DatabaseUnavailable``, or a pool that gave no connection in time).
    ``wrap_handler`` puts a raw ASGI layer between the request-context layer and Litestar, for a
    hot path that must not pay for Litestar's routing and handler machinery (the gateway's relay);
    its requests still get ids, traces, deadlines and metrics.
    ``/metrics`` and ``/info`` are served on INTERNAL_PORT when it is set, else on the public port;
    a service whose public port faces callers (the gateway) passes ``internal_endpoints_public=False``
    to keep them off it even without INTERNAL_PORT (then they are not served at all, and start-up
    logs a warning saying so).
    """
    check_discovery_settings(settings)  # here, so a bad value is a usage error, not a failed start-up
    internal_on_public_port = internal_endpoints_public and not settings.internal_port
    # Off (no OTLP endpoint, or OTEL_SDK_DISABLED): nothing of it is built or installed.
    tracing = Tracing.from_settings(settings, version=version) if tracing_enabled(settings) else None
    metrics = ServiceMetrics(settings.service_name)
    metrics.info.info({"version": version, "git_revision": settings.resolved_git_revision()})
    state = State(
        {
            "settings": settings,
            "service_version": version,
            "metrics": metrics,
            "accepting": False,
            "readiness_checks": {},
        }
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if tracing:
            # First: the components made below (HTTP client, consumers) find the provider installed.
            tracing.start()
        db = (
            Database(
                settings.resolved_database_url(), echo=settings.database_echo, pool_size=settings.database_pool_size
            )
            if database
            else None
        )
        app.state.db = db
        if db and tracing:
            instrument_database(db, tracing.tracer())
        app.state.readiness_checks = {**({"database": db.ping} if db else {}), **(readiness_checks or {})}
        where = db.describe() if db else "no database"
        try:
            async with AsyncExitStack() as stack:
                try:
                    if db and migrations and settings.migrate_on_start:
                        await migrate(db, migrations)
                    if settings.internal_port:
                        endpoints = internal_endpoints_of(app.state)
                        await stack.enter_async_context(
                            internal_endpoints(settings.host, settings.internal_port, endpoints)
                        )
                    elif not internal_on_public_port:
                        log.warning(
                            "/metrics and /info are not served: this service keeps them off its public port;"
                            " set INTERNAL_PORT to serve them to scrapers and operators there"
                        )
                    await stack.enter_async_context(shared_redis_component(app))
                    await stack.enter_async_context(resolver_component(app))
                    for component in components:
                        await stack.enter_async_context(component(app))
                    # Last in, first out: found by others only once everything else runs, and
                    # deregistered first on shutdown, before the rest stops.
                    await stack.enter_async_context(registration_component(app))
                except Exception as exc:
                    # One clear line before the server's traceback: what failed, and where.
                    log.error("start-up failed: %s: %s (%s)", type(exc).__name__, exc, where)
                    raise
                app.state.accepting = True
                log.info("started", extra={"version": version, "database": where})
                yield
                app.state.accepting = False
                log.info("stopping")
        finally:
            if db:
                await db.dispose()
            if tracing:
                await tracing.shutdown()  # last: the spans of everything stopped above get exported

    app = Litestar(
        route_handlers=[*operational_handlers(internal_on_public_port=internal_on_public_port), *route_handlers],
        lifespan=[lifespan],
        state=state,
        dependencies={
            "db": Provide(_provide_db, sync_to_thread=False),
            "settings": Provide(_provide_settings, sync_to_thread=False),
            **(dependencies or {}),
        },
        exception_handlers={**exception_handlers, **(_DATABASE_EXCEPTION_HANDLERS if database else {})},
        plugins=[HttpContract()],  # 415 for non-JSON bodies, truthful Allow, documented problems
        request_max_body_size=settings.max_request_body_bytes,
        openapi_config=OpenAPIConfig(title=settings.service_name, version=version),
        logging_config=None,
        after_exception=[record_handler_exception] if tracing else [],
    )
    # Outermost, so that even requests matching no route get ids, traces and metrics.
    handler: ASGIApp = HeadAsGet(app.asgi_handler)
    handler = wrap_handler(handler) if wrap_handler else handler
    app.asgi_handler = RequestContextMiddleware(handler, metrics, ServerSpans(tracing) if tracing else None)
    return app
