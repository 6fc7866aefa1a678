"""Builds the notifications service's Litestar app."""

from __future__ import annotations

from litestar import Litestar

from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version
from flotilla_streams.component import ConsumerSpec, messaging
from flotilla_streams.consumer import ConsumerOptions
from notifications.api import NotificationController
from notifications.handlers import notification_handlers
from notifications.settings import NotificationsSettings

VERSION = read_version("notifications")


def create_app(settings: NotificationsSettings, *, consumer_options: ConsumerOptions | None = None) -> Litestar:
    """The app; ``consumer_options`` tune the "notifications" group (tests make retries fast with them)."""
    consumer = ConsumerSpec(
        group="notifications",
        streams=[ORDERS_EVENTS],
        handlers=notification_handlers(),
        options=consumer_options or ConsumerOptions(),
    )
    # No outbox: notifications publishes nothing.
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[NotificationController],
        migrations="notifications.migrations",
        components=[messaging(consumers=[consumer])],
    )
