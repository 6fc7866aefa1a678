"""Entry point of catalog.pex: `catalog serve`, `catalog migrate`, `catalog --help`."""

from __future__ import annotations

import sys

from catalog.settings import CatalogSettings
from flotilla_kit.cli import ServiceDefinition, main
from flotilla_kit.info import read_version


def _create_app(settings: CatalogSettings) -> object:
    from catalog.app import create_app  # imported on `serve` only: --help stays fast

    return create_app(settings)


SERVICE = ServiceDefinition(
    name="catalog",
    version=read_version("catalog"),
    settings_class=CatalogSettings,
    create_app=_create_app,
    default_port=8001,
    migrations="catalog.migrations",
    description="Products and prices of the shop.",
)

if __name__ == "__main__":
    sys.exit(main(SERVICE))
