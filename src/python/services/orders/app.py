"""Builds the orders service's Litestar app: the API, the saga's consumer, its outbox and its sweeper."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide

from catalog_client import CatalogClient
from flotilla_contracts.events import INVENTORY_EVENTS, PAYMENTS_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.calls import service_calls
from flotilla_kit.info import read_version
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.outbox import Outbox
from orders.api import OrderController
from orders.handlers import saga_handlers
from orders.idempotency import IdempotencyKeys
from orders.saga import Clock, Saga, utc_now
from orders.settings import OrdersSettings
from orders.sweeper import sweeper_component

VERSION = read_version("orders")


def create_app(settings: OrdersSettings, *, clock: Clock = utc_now) -> Litestar:
    """The orders app; ``clock`` (aware UTC datetimes) drives every deadline, so tests can move time."""
    outbox = Outbox(source="orders")
    saga = Saga(step_timeout_seconds=settings.saga_step_timeout_seconds, clock=clock)

    def provide_catalog(state: State) -> CatalogClient:
        return CatalogClient(state.http, timeout=settings.catalog_timeout_seconds)

    def provide_idempotency_keys(state: State) -> IdempotencyKeys:
        return IdempotencyKeys(
            state.db,
            lock_timeout_seconds=settings.idempotency_lock_timeout_seconds,
            ttl_seconds=settings.idempotency_key_ttl_seconds,
            clock=clock,
        )

    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[OrderController],
        migrations="orders.migrations",
        components=[
            service_calls(),
            messaging(
                consumers=[
                    ConsumerSpec(
                        group="orders", streams=[INVENTORY_EVENTS, PAYMENTS_EVENTS], handlers=saga_handlers(saga)
                    )
                ],
                outbox=outbox,
            ),
            sweeper_component(saga, outbox),
        ],
        dependencies={
            "outbox": Provide(lambda: outbox, sync_to_thread=False),
            "saga": Provide(lambda: saga, sync_to_thread=False),
            "catalog": Provide(provide_catalog, sync_to_thread=False),
            "idempotency_keys": Provide(provide_idempotency_keys, sync_to_thread=False),
        },
    )
