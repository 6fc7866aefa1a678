"""How the services are wired to the streams, found statically (``ast``) in their sources.

- A consumer group: ``ConsumerSpec(group="inventory", streams=[ORDERS_EVENTS, CATALOG_EVENTS], ...)``
  (or ``StreamConsumer(..., group=..., streams=...)``) in a service's code; ``use_inbox=False`` is
  noted (its handlers run without the inbox).
- The streams a service publishes: ``messaging(publishes=[ORDERS_EVENTS], outbox=...)``.

Stream names are string literals or the stream constants of ``flotilla_contracts.events`` (imported
by name, or through the module). A group or stream the scan cannot read is an error naming the
place: the document must not silently leave a consumer out. Test folders and migrations are skipped.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from release.versions import ReleaseError

_CONSUMER_CALLS = frozenset({"ConsumerSpec", "StreamConsumer"})
_MESSAGING_CALL = "messaging"


class WiringError(ReleaseError):
    """A service's stream wiring that the scan cannot read."""


@dataclass(frozen=True)
class ConsumerGroup:
    """One consumer group of a service and the streams it reads."""

    service: str
    group: str
    streams: tuple[str, ...]
    inbox: bool = True  # handlers run with the inbox (effects once per event id) unless use_inbox=False


@dataclass
class Wiring:
    """Consumer groups, and per service the streams it publishes (and whether through an outbox)."""

    groups: list[ConsumerGroup] = field(default_factory=list)
    publishes: dict[str, list[str]] = field(default_factory=dict)
    outbox: dict[str, bool] = field(default_factory=dict)


def scan_wiring(services_root: Path, streams: Mapping[str, str], events_module: str) -> Wiring:
    """The wiring of every service folder under ``services_root``; ``streams`` maps the stream
    constants of ``events_module`` to their values. Raises WiringError for a call it cannot read."""
    wiring = Wiring()
    for service_dir in sorted(p for p in services_root.iterdir() if p.is_dir()):
        service = service_dir.name
        for path in _sources(service_dir):
            _scan(path, service, streams, events_module, wiring)
    wiring.groups.sort(key=lambda g: (g.group, g.service))
    for published in wiring.publishes.values():
        published.sort()
    return wiring


def _sources(service_dir: Path) -> list[Path]:
    return sorted(
        path
        for path in service_dir.rglob("*.py")
        if not ({"tests", "migrations"} & set(path.relative_to(service_dir).parts[:-1]))
        and not path.name.startswith("test_")
        and path.name != "conftest.py"
    )


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _scan(path: Path, service: str, streams: Mapping[str, str], events_module: str, wiring: Wiring) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    constants: dict[str, str] = {}  # local name -> stream
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                if node.module == events_module and alias.name in streams:
                    constants[alias.asname or alias.name] = streams[alias.name]
                elif f"{node.module}.{alias.name}" == events_module:  # from flotilla_contracts import events
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == events_module:
                    module_aliases.add(alias.asname or alias.name)

    def where(node: ast.AST) -> str:
        return f"{path}:{getattr(node, 'lineno', '?')}"

    def stream_of(expr: ast.expr) -> str:
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return expr.value
        if isinstance(expr, ast.Name) and expr.id in constants:
            return constants[expr.id]
        if isinstance(expr, ast.Attribute) and expr.attr in streams:
            owner = ast.unparse(expr.value)
            if owner in module_aliases or owner == events_module:
                return streams[expr.attr]
        raise WiringError(f"{where(expr)}: cannot tell which stream {ast.unparse(expr)!r} is")

    def streams_of(expr: ast.expr) -> list[str]:
        if isinstance(expr, ast.List | ast.Tuple):
            return [stream_of(item) for item in expr.elts]
        raise WiringError(f"{where(expr)}: streams must be a literal list, not {ast.unparse(expr)!r}")

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        if name in _CONSUMER_CALLS:
            group = keywords.get("group")
            if not (isinstance(group, ast.Constant) and isinstance(group.value, str)):
                shown = ast.unparse(group) if group is not None else "missing"
                raise WiringError(f"{where(node)}: {name}'s group must be a string literal, not {shown}")
            if "streams" not in keywords:
                raise WiringError(f"{where(node)}: {name} without streams=[...]")
            use_inbox = keywords.get("use_inbox")
            inbox = not (isinstance(use_inbox, ast.Constant) and use_inbox.value is False)
            wiring.groups.append(ConsumerGroup(service, group.value, tuple(streams_of(keywords["streams"])), inbox))
        elif name == _MESSAGING_CALL:
            published = streams_of(keywords["publishes"]) if "publishes" in keywords else []
            known = wiring.publishes.setdefault(service, [])
            known.extend(stream for stream in dict.fromkeys(published) if stream not in known)
            outbox = keywords.get("outbox")
            has_outbox = outbox is not None and not (isinstance(outbox, ast.Constant) and outbox.value is None)
            wiring.outbox[service] = wiring.outbox.get(service, False) or has_outbox
