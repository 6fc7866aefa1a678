"""Who produces and who consumes each event, found statically (``ast``) in the services' sources.

- A consumer registers a handler: ``@handlers.on(OrderPlaced)`` or ``handlers.on(OrderPlaced)(fn)``
  (any ``<expr>.on(EventClass)`` call).
- A producer builds the event and publishes it: ``ctx.publish(STREAM, OrderPlaced(...))`` or
  ``outbox.add(session, STREAM, OrderPlaced(...))``. Services often build the event in a helper
  (``domain.created_event``, the saga's follow-up) and publish the result, so a service that builds
  ``EventClass(...)`` anywhere in its code and publishes anything (``.publish``, ``outbox.add``,
  ``outbox.add_many``) counts as a producer of it.

Names are resolved through the module's imports (``from flotilla_contracts.events import X as Y``,
``from flotilla_contracts import events``); test folders are skipped.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_PUBLISH_METHODS = frozenset({"publish", "publish_many"})
_OUTBOX_METHODS = frozenset({"add", "add_many"})


@dataclass
class EventUsage:
    """Services producing and consuming one event, with where each was seen (path:line)."""

    producers: dict[str, list[str]] = field(default_factory=dict)
    consumers: dict[str, list[str]] = field(default_factory=dict)


def find_usage(
    services_root: Path, events: Iterable[str], events_modules: Iterable[str], *, base: Path | None = None
) -> dict[str, EventUsage]:
    """Usage of each event class name in ``events``, defined in one of ``events_modules``
    (e.g. ``flotilla_contracts.events``), over every service folder under ``services_root``;
    places are ``path:line`` relative to ``base`` (the repository root)."""
    wanted = set(events)
    modules = set(events_modules)
    usage = {name: EventUsage() for name in sorted(wanted)}
    for service_dir in sorted(p for p in services_root.iterdir() if p.is_dir()):
        built: dict[str, list[str]] = {}
        publishes = False
        for path in _sources(service_dir):
            scan = _scan(path, wanted, modules, base or services_root)
            publishes = publishes or scan.publishes
            for name, where in scan.consumed:
                usage[name].consumers.setdefault(service_dir.name, []).append(where)
                usage[name].consumers[service_dir.name].sort()
            for name, where in scan.built:
                built.setdefault(name, []).append(where)
        if publishes:
            for name, places in built.items():
                usage[name].producers[service_dir.name] = sorted(places)
    return usage


def _sources(service_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in service_dir.rglob("*.py")
        if not ({"tests", "migrations"} & set(path.relative_to(service_dir).parts[:-1]))
        and not path.name.startswith("test_")
        and path.name != "conftest.py"
    )


@dataclass
class _Scan:
    consumed: list[tuple[str, str]] = field(default_factory=list)
    built: list[tuple[str, str]] = field(default_factory=list)
    publishes: bool = False


def _scan(path: Path, wanted: set[str], modules: set[str], base: Path) -> _Scan:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: dict[str, str] = {}  # local name -> event class name
    module_aliases: set[str] = set()  # local names bound to an events module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if node.module in modules and alias.name in wanted:
                    names[alias.asname or alias.name] = alias.name
                elif f"{node.module}.{alias.name}" in modules:
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules and alias.asname:
                    module_aliases.add(alias.asname)

    def event_of(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute) and expr.attr in wanted:
            if isinstance(expr.value, ast.Name) and expr.value.id in module_aliases:
                return expr.attr
            if ast.unparse(expr.value) in modules:  # import flotilla_contracts.events
                return expr.attr
        return None

    scan = _Scan()
    where = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if node.attr in _PUBLISH_METHODS or (node.attr in _OUTBOX_METHODS and _names_outbox(node.value)):
                scan.publishes = True
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr == "on" and node.args:
            consumed = event_of(node.args[0])
            if consumed:
                scan.consumed.append((consumed, f"{where}:{node.lineno}"))
        built = event_of(node.func)
        if built:
            scan.built.append((built, f"{where}:{node.lineno}"))
    return scan


def _names_outbox(expr: ast.expr) -> bool:
    return "outbox" in ast.unparse(expr).lower()
