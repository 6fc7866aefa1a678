"""Operational endpoints every service has: /healthz, /readyz, /metrics, /info."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import State

from flotilla_kit.info import lib_versions, runtime_versions
from flotilla_kit.problems import problem_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[None]]
# A check that has not answered by then counts as failed: /readyz must answer fast itself.
CHECK_TIMEOUT_SECONDS = 2.0


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]


class ServiceInfo(msgspec.Struct):
    service: str
    version: str
    git_revision: str
    database: str
    libs: dict[str, str]
    runtime: dict[str, str]


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> Health:
    """Alive: the process answers. Says nothing about dependencies (that is /readyz)."""
    return Health("ok")


async def _run_check(check: ReadinessCheck) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"timed out after {CHECK_TIMEOUT_SECONDS:g}s"
    except Exception as exc:  # any failure means "not ready", with the reason shown
        return f"failed: {type(exc).__name__}: {exc}"
    return "ok"


@get("/readyz", include_in_schema=False)
async def readyz(request: Request[Any, Any, Any], state: State) -> Response[Any]:
    """Ready to take traffic: started, not shutting down, and every dependency answers."""
    checks: dict[str, ReadinessCheck] = state.readiness_checks
    names = list(checks)
    results = dict(zip(names, await asyncio.gather(*(_run_check(checks[n]) for n in names)), strict=False))
    if not state.accepting:
        results["lifecycle"] = "shutting down"
    failed = {name: result for name, result in results.items() if result != "ok"}
    if failed:
        log.warning("not ready", extra={"checks": failed})
        problem = problem_response(
            request, 503, type_name="not-ready", detail="; ".join(f"{k}: {v}" for k, v in failed.items())
        )
        problem.content.errors = [{"check": k, "result": v} for k, v in results.items()]
        return problem
    return Response(Readiness("ready", results))


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics(state: State) -> Response[bytes]:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@get("/info", include_in_schema=False, sync_to_thread=False)
def info(state: State) -> ServiceInfo:
    return service_info(state)


def service_info(state: State) -> ServiceInfo:
    """What /info answers: the service, its version and revision, and the versions inside it."""
    settings = state.settings
    return ServiceInfo(
        service=settings.service_name,
        version=state.service_version,
        git_revision=settings.resolved_git_revision(),
        database=state.db.url.get_backend_name() if state.db else "none",
        libs=lib_versions(),
        runtime=runtime_versions(),
    )


def operational_handlers(*, internal_on_public_port: bool) -> list[Any]:
    """The kit's endpoints on the public port: /healthz and /readyz, and /metrics and /info if asked."""
    return [healthz, readyz, metrics, info] if internal_on_public_port else [healthz, readyz]


def internal_endpoints_of(state: State) -> dict[str, Callable[[], tuple[bytes, bytes]]]:
    """/metrics and /info for the internal port (see flotilla_kit.internal)."""
    return {
        "/metrics": lambda: (CONTENT_TYPE_LATEST.encode(), generate_latest(state.metrics.registry)),
        "/info": lambda: (b"application/json", msgspec.json.encode(service_info(state))),
    }
