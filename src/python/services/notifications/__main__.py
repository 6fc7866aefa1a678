"""Entry point of notifications.pex: `notifications serve`, `migrate`, `dlq`, `--help`."""

from __future__ import annotations

import sys

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version
from flotilla_streams.cli import dlq_command
from notifications.settings import NotificationsSettings


def _create_app(settings: NotificationsSettings) -> object:
    from notifications.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="notifications",
    version=read_version("notifications"),
    settings_class=NotificationsSettings,
    create_app=_create_app,
    default_port=8005,
    migrations="notifications.migrations",
    description="What the shop tells customers about their orders (recorded, with a read API).",
    commands=[dlq_command],
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
