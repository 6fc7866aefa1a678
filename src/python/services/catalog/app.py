"""Builds the catalog's Litestar app."""

from __future__ import annotations

from litestar import Litestar

from catalog.api import ProductController
from catalog.settings import CatalogSettings
from flotilla_kit.app import create_service_app
from flotilla_kit.info import read_version

VERSION = read_version("catalog")


def create_app(settings: CatalogSettings) -> Litestar:
    return create_service_app(
        settings,
        version=VERSION,
        route_handlers=[ProductController],
        migrations="catalog.migrations",
    )
