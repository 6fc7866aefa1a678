"""A service that calls another (itself, under another SERVICE_NAME), for the tracing tests:

    SERVICE_NAME=back python -m flotilla_kit.tests.traced_service serve --port 8124
    SERVICE_NAME=front DISCOVERY=static SERVICE_URLS=back=http://127.0.0.1:8124 \\
        python -m flotilla_kit.tests.traced_service serve --port 8125

``GET /relay/{item_id}`` on front calls ``GET /items/{item_id}`` on back, which reads its database.
"""

from __future__ import annotations

import sys
from typing import Any

import sqlalchemy as sa
from litestar import Litestar, Request, get
from litestar.di import NamedDependency

from flotilla_kit.app import create_service_app
from flotilla_kit.calls import service_calls
from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.db import Database
from flotilla_kit.settings import ServiceSettings


@get("/items/{item_id:int}")
async def read_item(item_id: int, db: NamedDependency[Database]) -> dict[str, int]:
    row = await db.fetch_one(sa.select(sa.literal(item_id)))
    assert row is not None
    return {"item_id": int(row[0])}


@get("/relay/{item_id:int}")
async def relay(item_id: int, request: Request[Any, Any, Any]) -> dict[str, Any]:
    answer = await request.app.state.http.request("back", "GET", f"/items/{item_id}")
    return {"status": answer.status, "back": answer.json()}


def create_app(settings: ServiceSettings) -> Litestar:
    return create_service_app(
        settings, version="0.0.1", route_handlers=[read_item, relay], components=[service_calls(timeout_seconds=10)]
    )


SERVICE = ServiceDefinition(
    name="traced",
    version="0.0.1",
    settings_class=ServiceSettings,
    create_app=create_app,
    default_port=8124,
    description="Two services in one, for the tracing tests.",
)


if __name__ == "__main__":
    sys.exit(main(SERVICE))
