"""The HTTP contract every service keeps beyond its bodies, installed as one Litestar plugin.

- Bodies decoded as JSON must be declared as JSON (415 otherwise): ``flotilla_kit.media_types``.
- OPTIONS and 405 list in ``Allow`` the methods a path really takes: ``flotilla_kit.methods``.
- Each operation documents every problem it can answer, with one schema: ``flotilla_kit.openapi``.

Everything is decided when routes are registered; requests pay nothing for it, but for the media
type check on the ones whose body is decoded as JSON.
"""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from flotilla_kit.media_types import JsonRequest
from flotilla_kit.methods import replace_options_handler
from flotilla_kit.openapi import document_problems


class HttpContract(InitPluginProtocol, ReceiveRoutePlugin):
    """Pass to ``Litestar(plugins=[...])``; a ``request_class`` given to the app is kept (and so bypasses the 415 check)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        if app_config.request_class is None:
            app_config.request_class = JsonRequest
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if isinstance(route, HTTPRoute):
            replace_options_handler(route)
            document_problems(route)
