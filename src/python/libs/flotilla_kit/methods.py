"""The methods a path accepts, as OPTIONS and 405 answers list them in ``Allow``.

Litestar gets both slightly wrong: a path whose handlers are registered in two steps (a
controller's ``GET /`` and ``POST /``) keeps an OPTIONS handler bound to the first step's route, so
OPTIONS leaves methods out; and neither lists HEAD, which the kit serves wherever GET is served
(``flotilla_kit.middleware.HeadAsGet``). ``replace_options_handler`` fixes a route once, when it is
registered, so that answering OPTIONS costs what it did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Response
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler
from litestar.routes import HTTPRoute

# Litestar's own OPTIONS handler, the one route.create_options_handler makes, known by a private
# name: tests/test_contract.py fails if a Litestar upgrade renames it (the replacement would stop).
LITESTAR_OPTIONS_HANDLER = "HTTPRoute.create_options_handler.<locals>.options_handler"
_OURS = "flotilla_options"


def allow_header(methods: Iterable[str]) -> str:
    """The ``Allow`` value for a path whose handlers take ``methods``: with HEAD wherever GET is, and OPTIONS."""
    allowed = {method.upper() for method in methods} | {"OPTIONS"}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def replace_options_handler(route: HTTPRoute) -> None:
    """Answer OPTIONS on ``route`` with the methods all its handlers take (unless a service answers it itself).

    Call it each time the route is registered (again): Litestar rebuilds a route when handlers are
    added to its path, and the replacement must list them too.
    """
    entry = route.route_handler_map.get("OPTIONS")
    if entry is None:
        return
    current, _ = entry
    if current.opt.get(_OURS) is None and current.fn.__qualname__ != LITESTAR_OPTIONS_HANDLER:
        return  # the service's own OPTIONS handler
    allow = allow_header(route.methods)

    def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    handler = HTTPRouteHandler(
        path=route.path, http_method=[HttpMethod.OPTIONS], include_in_schema=False, sync_to_thread=False, opt={_OURS: 1}
    )(options)
    handler.owner = current.owner
    app: Any = current.ownership_layers[0]  # the Litestar app, root of every handler's layers
    handler.on_registration(app)
    route.route_handlers[route.route_handlers.index(current)] = handler
    route.route_handler_map["OPTIONS"] = (handler, handler.create_kwargs_model(path_parameters=route.path_parameters))


def options_answered_by_the_kit(route: HTTPRoute) -> bool:
    """Whether OPTIONS on ``route`` is answered by the handler ``replace_options_handler`` put there."""
    entry = route.route_handler_map.get("OPTIONS")
    return entry is not None and entry[0].opt.get(_OURS) is not None
