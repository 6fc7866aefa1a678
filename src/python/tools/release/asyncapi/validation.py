"""Checks of an AsyncAPI document: the official AsyncAPI 3.0.0 JSON Schema (vendored, offline: see
SCHEMA_SOURCE.md), and what that schema cannot see (every local ``$ref`` resolves; an operation's
messages are messages of its channel, as the specification requires)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import jsonschema

SCHEMA_RESOURCE = "asyncapi-3.0.0.schema.json"


@functools.cache
def asyncapi_schema() -> dict[str, Any]:
    """The official AsyncAPI 3.0.0 schema (draft-07, its definitions bundled with their ``$id``s)."""
    loaded: dict[str, Any] = json.loads((resources.files(__package__ or __name__) / SCHEMA_RESOURCE).read_text())
    return loaded


def validate(document: Any) -> list[str]:
    """Every problem of ``document``, one line each (``at <path>: <problem>``); empty when valid."""
    validator = jsonschema.Draft7Validator(asyncapi_schema())
    problems = [f"at {_path(error.absolute_path)}: {_message(error)}" for error in validator.iter_errors(document)]
    if problems:  # the references are only worth checking in a document of the right shape
        return sorted(problems)
    return reference_problems(document)


def reference_problems(document: dict[str, Any]) -> list[str]:
    """Local ``$ref``s that point nowhere, and operation messages that are not their channel's."""
    problems = []
    for where, ref in _refs(document, ()):
        if ref.startswith("#") and resolve(document, ref) is _MISSING:
            problems.append(f"at {_path(where)}: $ref {ref} points nowhere")
    for name, operation in document.get("operations", {}).items():
        channel_ref = operation.get("channel", {}).get("$ref", "")
        prefix = channel_ref + "/messages/"
        for message in operation.get("messages", []):
            if not message.get("$ref", "").startswith(prefix):
                problems.append(f"at operations.{name}: message {message.get('$ref')} is not one of {channel_ref}'s")
    return problems


_MISSING = object()


def resolve(document: Any, ref: str) -> Any:
    """The value a local JSON pointer (``#/a/b``) names in ``document``, else a sentinel."""
    node = document
    for raw in ref.removeprefix("#").split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _refs(node: Any, where: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append((where, value))
            elif not (isinstance(key, str) and key.startswith("x-")):  # extensions are free text
                found += _refs(value, (*where, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _refs(value, (*where, index))
    return found


def _path(parts: Any) -> str:
    return ".".join(str(part) for part in parts) or "the document"


def _message(error: jsonschema.ValidationError) -> str:
    # A oneOf/anyOf failure says little by itself; its most relevant sub-error says what is wrong.
    best = jsonschema.exceptions.best_match(error.context) if error.context else None
    return f"{error.message} ({best.message})" if best is not None else error.message
