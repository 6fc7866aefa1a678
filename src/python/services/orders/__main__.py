"""Entry point of orders.pex: `orders serve`, `orders migrate`, `orders --help`."""

from __future__ import annotations

import sys

from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version
from orders.settings import OrdersSettings


def _create_app(settings: OrdersSettings) -> object:
    from orders.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="orders",
    version=read_version("orders"),
    settings_class=OrdersSettings,
    create_app=_create_app,
    default_port=8003,
    migrations="orders.migrations",
    description="Order placement, and the saga that carries each order to confirmed or cancelled.",
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
