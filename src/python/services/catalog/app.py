"""Builds the catalog's Litestar app."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide

from catalog.api import ProductController
from catalog.settings import CatalogSettings
from flotilla_contracts.events import CATALOG_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version
from flotilla_streams.component import messaging
from flotilla_streams.outbox import Outbox

VERSION = read_version("catalog")


def create_app(settings: CatalogSettings) -> Litestar:
    # The catalog publishes (through its outbox, in the transaction of each change) and consumes nothing.
    outbox = Outbox(source="catalog")
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[ProductController],
        migrations="catalog.migrations",
        components=[messaging(outbox=outbox, publishes=[CATALOG_EVENTS])],
        dependencies={"outbox": Provide(lambda: outbox, sync_to_thread=False)},
    )
