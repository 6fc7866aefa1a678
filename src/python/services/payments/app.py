"""Builds the payments service's Litestar app."""

from __future__ import annotations

from litestar import Litestar

from flotilla_contracts.events import ORDERS_EVENTS
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


def create_app(settings: PaymentsSettings, *, consumer_options: ConsumerOptions | None = None) -> Litestar:
    """The app; ``consumer_options`` tune the "payments" group (tests make retries fast with them).

    The provider is on ``app.state.provider`` (its attempts and failures are counted there).
    """
    provider = SimulatedProvider.from_settings(settings)
    consumer = ConsumerSpec(
        group="payments",
        streams=[ORDERS_EVENTS],
        handlers=payment_handlers(provider),
        options=consumer_options or ConsumerOptions(),
    )
    app = create_service_app(
        settings,
        version=VERSION,
        route_handlers=[PaymentController],
        migrations="payments.migrations",
        components=[messaging(consumers=[consumer], outbox=Outbox(source="payments"))],
    )
    app.state.provider = provider
    return app
