"""Runs an ASGI app with uvicorn (uvloop + httptools): chosen by measurement, see tools/bench."""

from __future__ import annotations

from typing import Any

from flotilla_kit.settings import ServiceSettings


def serve(app: Any, settings: ServiceSettings) -> None:
    """Serve until SIGINT/SIGTERM, then stop taking connections, finish in-flight requests
    (up to ``shutdown_timeout_seconds``) and run the app's shutdown (components, database)."""
    import uvicorn  # imported here: `migrate` and `--help` should not pay for it

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the request metrics and our JSON logs cover it, at less cost
        log_config=None,  # keep the JSON logging configured by the CLI
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        # Start-up failed (lifespan error, port in use); uvicorn has logged why.
        raise SystemExit(3)
