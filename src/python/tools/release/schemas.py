"""The contract snapshot of a lib: the JSON Schema (from msgspec) of every event and model it defines.

A snapshot is one JSON document per lib version, written with sorted keys so that the same models
always give the same bytes::

    {"lib": ..., "version": ...,
     "events": {"<Model>": {"tag": "orders.OrderPlaced", "tag_field": "type", "schema_version": 1}},
     "models": {"<Model>": {"module": ..., "forbid_unknown_fields": ..., "omit_defaults": ...}},
     "components": {"<Model>": <JSON Schema of the model, from msgspec.json.schema_components>}}

Models are keyed by their component name (the class name, which msgspec qualifies on a clash). The
wire identity of an event is its tag and tag field (the envelope's ``type``) and its
``schema_version`` (the envelope's ``version``); both are kept beside the schema.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
from release.versions import ReleaseError

from flotilla_contracts.events import Event

REF_PREFIX = "#/components/"
Document = dict[str, Any]


def lib_modules(lib: str) -> list[ModuleType]:
    """The lib's package and every module under it, imported (tests and testing helpers left out)."""
    try:
        package = importlib.import_module(lib)
        modules = [package]
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{lib}."):
            parts = info.name.split(".")
            if "tests" in parts or "testing" in parts or parts[-1].startswith("test_"):
                continue
            modules.append(importlib.import_module(info.name))
    except ImportError as exc:
        raise ReleaseError(
            f"cannot import {lib}: {exc} (run through `./pants run src/python/tools/release:release`, or put"
            " src/python/libs on PYTHONPATH)"
        ) from None
    return modules


def defined_structs(modules: Iterable[ModuleType]) -> list[type[msgspec.Struct]]:
    """msgspec Structs defined (not merely imported) in these modules, in a stable order."""
    found: dict[str, type[msgspec.Struct]] = {}
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, msgspec.Struct)
                and value.__module__ == module.__name__
                and value is not Event  # the base of events has no wire form of its own
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


def schema_components(
    roots: Sequence[type[msgspec.Struct]], *, ref_template: str
) -> tuple[tuple[dict[str, Any], ...], dict[str, Any]]:
    """msgspec's JSON schemas of ``roots``, descriptions cleaned as ``inspect.cleandoc`` does: msgspec
    releases differ in whether they dedent docstrings, and a document must not change with them."""
    refs, components = msgspec.json.schema_components(roots, ref_template=ref_template)
    return refs, _cleaned(components)


def _cleaned(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: inspect.cleandoc(item) if key == "description" and isinstance(item, str) else _cleaned(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_cleaned(item) for item in value]
    return value


def build_document(structs: Iterable[type[msgspec.Struct]], *, lib: str, version: str | None = None) -> Document:
    """The snapshot document of these models (every Event subclass among them is also listed as an event)."""
    roots = list(structs)
    refs, components = schema_components(roots, ref_template=REF_PREFIX + "{name}")
    models: dict[str, Any] = {}
    events: dict[str, Any] = {}
    for cls, ref in zip(roots, refs, strict=True):
        name = ref["$ref"].removeprefix(REF_PREFIX)
        config = cls.__struct_config__
        models[name] = {
            "module": cls.__module__,
            "forbid_unknown_fields": config.forbid_unknown_fields,
            "omit_defaults": config.omit_defaults,
            "array_like": config.array_like,
            # Field order is the wire format of an array_like model; the schema's keys are sorted.
            "fields": list(cls.__struct_encode_fields__),
            "tag": config.tag,
            "tag_field": config.tag_field,
        }
        if issubclass(cls, Event):
            events[name] = {
                "tag": config.tag,
                "schema_version": getattr(cls, "schema_version", 1),
            }
    document: Document = {"lib": lib, "events": events, "models": models, "components": components}
    if version is not None:
        document["version"] = version
    # A JSON round trip gives plain lists and dicts, the same shape a snapshot file loads as.
    loaded: Document = json.loads(dumps(document))
    return loaded


def current_document(lib: str) -> Document:
    """The document of the lib's models as the code defines them now (imports the lib)."""
    return build_document(defined_structs(lib_modules(lib)), lib=lib)


def dumps(document: Document) -> str:
    """Deterministic text of a document: sorted keys, two-space indent, a final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def load(path: Path) -> Document:
    loaded: Document = json.loads(path.read_text())
    return loaded


def has_models(document: Document) -> bool:
    return bool(document["models"])
