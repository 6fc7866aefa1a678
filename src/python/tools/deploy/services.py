"""What the manifests need to know about each service, read from the service's own code.

Nothing here is a second copy of a fact the code holds: the name, default port, settings Struct and
database come from the service's ``ServiceDefinition`` (its ``__main__``), the consumer groups and
their streams from the ``ConsumerSpec(...)`` calls in its ``app.py`` (read, not run: building an
app needs keys and Redis), the stream names from ``flotilla_contracts.events``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import msgspec

from flotilla_contracts import events
from flotilla_kit.cli import ServiceDefinition
from flotilla_kit.settings import ServiceSettings

# Every service the deploy tool renders; its BUILD packages their entry points. `render` run from a
# checkout also checks this against the services' BUILD files, so a new service cannot be missed.
SERVICES = ("catalog", "console", "gateway", "inventory", "notifications", "orders", "payments")


class DeployError(Exception):
    """The services' code does not give the tool what it needs; the message says what and where."""


@dataclass(frozen=True)
class ConsumerGroup:
    group: str
    streams: tuple[str, ...]


@dataclass(frozen=True)
class ServiceFacts:
    name: str
    settings_class: type[ServiceSettings]
    default_port: int
    has_database: bool  # the service keeps state in its own database (it has migrations)
    consumer_groups: tuple[ConsumerGroup, ...]
    shutdown_timeout_seconds: float

    @property
    def consumes(self) -> bool:
        return bool(self.consumer_groups)

    def setting_names(self) -> set[str]:
        """The environment variables the service reads (its settings Struct's fields, upper-cased)."""
        return {field.encode_name.upper() for field in msgspec.structs.fields(self.settings_class)}

    def required_settings(self) -> set[str]:
        """Settings without a default: a pod that lacks one does not start."""
        return {field.encode_name.upper() for field in msgspec.structs.fields(self.settings_class) if field.required}


def service_definition(name: str) -> ServiceDefinition:
    """The ``SERVICE`` of ``<name>/__main__.py`` (imported as a module: its ``__main__`` guard holds)."""
    try:
        module = importlib.import_module(f"{name}.__main__")
    except ImportError as exc:
        raise DeployError(
            f"service {name!r}: cannot import {name}.__main__ ({exc}); "
            "is it a dependency of src/python/tools/deploy:deploy?"
        ) from None
    definition = getattr(module, "SERVICE", None)
    if not isinstance(definition, ServiceDefinition):
        raise DeployError(f"service {name!r}: {name}/__main__.py defines no SERVICE = ServiceDefinition(...)")
    return definition


def _source_of(module: str) -> tuple[str, str]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DeployError(f"cannot find the source of {module}")
    return spec.origin, Path(spec.origin).read_text()


def _stream_name(node: ast.expr, where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(events, node.id, None), str):
        return str(getattr(events, node.id))
    raise DeployError(
        f"{where}: a ConsumerSpec stream must be a string or a name from flotilla_contracts.events, "
        f"not {ast.unparse(node)!r}"
    )


def consumer_groups(service: str) -> tuple[ConsumerGroup, ...]:
    """The groups ``<service>/app.py`` builds with ``ConsumerSpec(group=..., streams=[...])``."""
    path, source = _source_of(f"{service}.app")
    found: list[ConsumerGroup] = []
    for node in ast.walk(ast.parse(source, path)):
        if not (isinstance(node, ast.Call) and _called_name(node.func) == "ConsumerSpec"):
            continue
        where = f"{path}:{node.lineno}"
        arguments = {keyword.arg: keyword.value for keyword in node.keywords}
        group, streams = arguments.get("group"), arguments.get("streams")
        if not (isinstance(group, ast.Constant) and isinstance(group.value, str)):
            raise DeployError(f"{where}: ConsumerSpec(group=...) must be a string literal, keyword-passed")
        if not isinstance(streams, ast.List | ast.Tuple):
            raise DeployError(f"{where}: ConsumerSpec(streams=[...]) must be a literal list, keyword-passed")
        found.append(ConsumerGroup(group.value, tuple(_stream_name(s, where) for s in streams.elts)))
    return tuple(sorted(found, key=lambda g: g.group))


def _called_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def service_facts(name: str) -> ServiceFacts:
    definition = service_definition(name)
    if definition.name != name:
        raise DeployError(f"service folder {name!r} defines SERVICE named {definition.name!r}")
    shutdown = next(
        f.default for f in msgspec.structs.fields(definition.settings_class) if f.name == "shutdown_timeout_seconds"
    )
    return ServiceFacts(
        name=name,
        settings_class=definition.settings_class,
        default_port=definition.default_port,
        has_database=definition.migrations is not None,
        consumer_groups=consumer_groups(name),
        shutdown_timeout_seconds=float(shutdown),
    )


def all_services() -> list[ServiceFacts]:
    return [service_facts(name) for name in SERVICES]


def services_in_checkout(root: Path) -> set[str] | None:
    """Folders of src/python/services whose BUILD has a pex_binary; None outside a checkout."""
    services = root / "src" / "python" / "services"
    builds = list(services.glob("*/BUILD")) if services.is_dir() else []
    if not builds:  # no folder, or sources without their BUILD files (a test's sandbox): not a checkout
        return None
    return {build.parent.name for build in builds if "pex_binary(" in build.read_text()}
