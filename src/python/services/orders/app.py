"""Builds the orders service's Litestar app: the API, the saga's consumer, its outbox and its sweeper."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from flotilla_contracts.events import INVENTORY_EVENTS, ORDERS_EVENTS, PAYMENTS_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.calls import service_calls
from flotilla_kit.info import read_version
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.outbox import Outbox
from orders.api import OrderController
from orders.handlers import saga_handlers
from orders.placing import Placement, placement_component
from orders.saga import Clock, Saga, in_utc, utc_now
from orders.settings import OrdersSettings
from orders.sweeper import sweeper_component

VERSION = read_version("orders")


def _provide_placement(state: State) -> Placement:
    placement: Placement = state.placement
    return placement


def create_app(settings: OrdersSettings, *, clock: Clock = utc_now) -> Litestar:
    """The orders app; ``clock`` (aware datetimes) drives every deadline, so tests can move time."""
    clock = in_utc(clock)
    outbox = Outbox(source="orders")
    saga = Saga(step_timeout_seconds=settings.saga_step_timeout_seconds, clock=clock)
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[OrderController],
        migrations="orders.migrations",
        components=[
            service_calls(),
            placement_component(outbox, saga),  # after service_calls: it needs app.state.http
            messaging(
                consumers=[
                    ConsumerSpec(
                        group="orders", streams=[INVENTORY_EVENTS, PAYMENTS_EVENTS], handlers=saga_handlers(saga)
                    )
                ],
                outbox=outbox,
                publishes=[ORDERS_EVENTS],
            ),
            sweeper_component(saga, outbox),
        ],
        dependencies={"placement": Provide(_provide_placement, sync_to_thread=False)},
    )
