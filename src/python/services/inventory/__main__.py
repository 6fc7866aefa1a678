"""Entry point of inventory.pex: `inventory serve`, `inventory migrate`, `inventory --help`."""

from __future__ import annotations

import sys

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version
from flotilla_streams.cli import dlq_command
from inventory.settings import InventorySettings


def _create_app(settings: InventorySettings) -> object:
    from inventory.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="inventory",
    version=read_version("inventory"),
    settings_class=InventorySettings,
    create_app=_create_app,
    default_port=8002,
    migrations="inventory.migrations",
    description="Stock per product, and reservations of stock for orders.",
    commands=[dlq_command],
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
