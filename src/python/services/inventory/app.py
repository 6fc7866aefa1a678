"""Builds the inventory's Litestar app: its HTTP API, and its consumer of order and catalog events."""

from __future__ import annotations

from litestar import Litestar

from flotilla_contracts.events import CATALOG_EVENTS, INVENTORY_EVENTS, ORDERS_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.outbox import Outbox
from inventory.api import ReservationController, StockController
from inventory.handlers import build_handlers
from inventory.settings import InventorySettings

VERSION = read_version("inventory")


def create_app(settings: InventorySettings, *, consumer_options: ConsumerOptions | None = None) -> Litestar:
    """``consumer_options`` tune the consumer (tests shorten its waits); the defaults suit production."""
    consumer = ConsumerSpec(
        group="inventory",
        streams=[ORDERS_EVENTS, CATALOG_EVENTS],
        handlers=build_handlers(),
        options=consumer_options or ConsumerOptions(),
    )
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[StockController, ReservationController],
        migrations="inventory.migrations",
        components=[messaging(consumers=[consumer], outbox=Outbox(source="inventory"), publishes=[INVENTORY_EVENTS])],
    )
