"""Builds the payments service's Litestar app."""

from __future__ import annotations

import dataclasses

from litestar import Litestar

from flotilla_contracts.events import ORDERS_EVENTS, PAYMENTS_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import ConsumerOptions
from flotilla_streams.outbox import Outbox
from payments.api import PaymentController
from payments.handlers import payment_handlers
from payments.provider import SimulatedProvider
from payments.settings import PaymentsSettings

VERSION = read_version("payments")

# How long one batch may spend in the provider's injected latency, all captures together: the
# batch's transaction (and SQLite's write lock) is held meanwhile; see settings.MAX_PROVIDER_LATENCY_MS.
_LATENCY_PER_BATCH_MS = 1_000


def default_consumer_options(settings: PaymentsSettings) -> ConsumerOptions:
    """The "payments" group's options: the defaults, with batches cut to the provider's latency."""
    options = ConsumerOptions()
    if settings.provider_latency_ms == 0:
        return options
    fitting = max(1, _LATENCY_PER_BATCH_MS // settings.provider_latency_ms)
    return dataclasses.replace(options, batch_size=min(options.batch_size, fitting))


def create_app(settings: PaymentsSettings, *, consumer_options: ConsumerOptions | None = None) -> Litestar:
    """The app; ``consumer_options`` replace ``default_consumer_options(settings)`` (tests make
    retries fast with them).

    The provider is on ``app.state.provider`` (its attempts and failures are counted there).
    """
    provider = SimulatedProvider.from_settings(settings)
    consumer = ConsumerSpec(
        group="payments",
        streams=[ORDERS_EVENTS],
        handlers=payment_handlers(provider),
        options=consumer_options or default_consumer_options(settings),
    )
    app = create_service_app(
        settings,
        version=VERSION,
        route_handlers=[PaymentController],
        migrations="payments.migrations",
        components=[messaging(consumers=[consumer], outbox=Outbox(source="payments"), publishes=[PAYMENTS_EVENTS])],
    )
    app.state.provider = provider
    return app
