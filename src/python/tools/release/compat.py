"""Classify the changes between two contract snapshots, in the spirit of ``buf breaking`` and a schema
registry's compatibility modes.

Directions, for a reader and a writer on two versions of a model:

- BACKWARD compatible: a reader on the new schema reads data written with the old one (an upgraded
  consumer reads the events still in the stream; an upgraded client reads an old server's answer).
- FORWARD compatible: a reader on the old schema reads data written with the new one (a consumer not
  yet upgraded reads an upgraded producer's events).
- FULL: both. Events must be FULL: old events stay in the streams while consumers upgrade, and old
  consumers read new events. HTTP models are held to FULL too: services and their clients are
  deployed independently, so each side reads the other's older and newer data.

msgspec ignores unknown fields when decoding (unless a model forbids them), so a new field is
invisible to old readers, and a field missing from the data takes the reader's default or fails
when the reader requires it. Each change names the directions it breaks; any broken direction makes
it breaking (a major bump), a compatible change needs a minor bump, a documentation change a patch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from release.schemas import REF_PREFIX, Document
from release.versions import Part, part_rank

BACKWARD = "backward"
FORWARD = "forward"
BOTH = frozenset({BACKWARD, FORWARD})
NONE: frozenset[str] = frozenset()

# Stable rule ids (they appear in CI output, JSON and changelogs: never rename one).
RULES: dict[str, str] = {
    "EVENT_ADDED": "a new event type: old consumers ack it unhandled (compatible)",
    "EVENT_REMOVED": "an event type is gone: its events still in the streams have no type for new consumers",
    "MODEL_ADDED": "a new model (compatible)",
    "MODEL_REMOVED": "a model is gone: code and readers using it break",
    "TAG_CHANGED": "the tag (the envelope's type) changed: every reader of the other version misroutes it",
    "TAG_FIELD_CHANGED": "the tag field changed: readers of the other version cannot find the type",
    "EVENT_VERSION_CHANGED": "the event's schema_version (the envelope's version) changed",
    "ENCODING_CHANGED": "array_like turned on/off, or an array_like model's field order changed: readers of"
    " the other version cannot decode it",
    "MODEL_CLOSED": "the model now forbids unknown fields: a later addition will break old readers",
    "MODEL_OPENED": "the model now ignores unknown fields (compatible)",
    "FIELD_ADDED_OPTIONAL": "a new field with a default (compatible; breaks forward on a model forbidding unknown fields)",
    "FIELD_ADDED_REQUIRED": "a new required field: new readers fail on old data that lacks it",
    "FIELD_REMOVED": "a field is gone: old readers fail (or read the default) on new data",
    "FIELD_RENAMED": "a field renamed (a removal plus an addition): the value is lost in both directions",
    "FIELD_MADE_REQUIRED": "a field lost its default: new readers fail on old data that omits it",
    "FIELD_MADE_OPTIONAL": "a field got a default (compatible unless the model omits defaults when encoding)",
    "DEFAULT_CHANGED": "a field's default changed (compatible unless the model omits defaults when encoding)",
    "TYPE_CHANGED": "a field's type changed (e.g. int -> str): readers fail on the other version's values",
    "FIELD_MADE_NULLABLE": "a field may now be null: old readers fail on new data holding null",
    "FIELD_MADE_NON_NULLABLE": "a field may no longer be null: new readers fail on old data holding null",
    "ENUM_NARROWED": "an enum/Literal lost values: new readers fail on old data holding them",
    "ENUM_WIDENED": "an enum/Literal gained values: old readers fail on new data holding them",
    "CONSTRAINT_TIGHTENED": "a constraint is stricter (Meta ge/le/max_length/pattern...): new readers reject old data",
    "CONSTRAINT_LOOSENED": "a constraint is looser: old readers reject new data beyond their limits",
    "CONSTRAINT_CHANGED": "a constraint changed both ways: each version may reject the other's data",
    "DOCS_CHANGED": "only titles, descriptions or examples changed (patch)",
}

_DOC_KEYS = frozenset({"title", "description", "examples", "$comment"})
# Limits on values of one type ("format" is not one: uuid -> str is a change of type).
_CONSTRAINTS = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "propertyNames",
    }
)


@dataclass(frozen=True)
class Change:
    """One classified difference: where (lib, model, field), which rule, which directions it breaks."""

    lib: str
    model: str
    field: str | None
    rule: str
    detail: str
    breaks: frozenset[str] = NONE

    @property
    def breaking(self) -> bool:
        return bool(self.breaks)

    @property
    def level(self) -> Part:
        if self.breaks:
            return "major"
        return "patch" if self.rule == "DOCS_CHANGED" else "minor"

    @property
    def where(self) -> str:
        return f"{self.model}.{self.field}" if self.field else self.model

    def line(self) -> str:
        """One line for people: lib, model.field, rule, what it breaks, why."""
        if self.breaks:
            verdict = "BREAKING " + "+".join(sorted(self.breaks))
        else:
            verdict = "compatible" if self.level == "minor" else "docs"
        return f"{self.lib}: {self.where}: {self.rule} [{verdict}] {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "lib": self.lib,
            "model": self.model,
            "field": self.field,
            "rule": self.rule,
            "breaks": sorted(self.breaks),
            "breaking": self.breaking,
            "level": self.level,
            "detail": self.detail,
        }


def needed_bump(changes: Iterable[Change]) -> Part | None:
    """The smallest bump these changes need: major if any breaks, minor for additions, patch for docs."""
    needed: Part | None = None
    for change in changes:
        if part_rank(change.level) > part_rank(needed):
            needed = change.level
    return needed


def compare(old: Document, new: Document) -> list[Change]:
    """Every change from the ``old`` snapshot to the ``new`` one, in a stable order (by model, field, rule)."""
    lib = str(new.get("lib") or old.get("lib"))
    diff = _Diff(lib)
    old_models: Mapping[str, Any] = old["models"]
    new_models: Mapping[str, Any] = new["models"]
    old_events: Mapping[str, Any] = old["events"]
    new_events: Mapping[str, Any] = new["events"]
    for name in sorted(old_models.keys() | new_models.keys()):
        if name not in new_models:
            if name in old_events:
                tag = old_events[name]["tag"]
                diff.add(name, None, "EVENT_REMOVED", f"{tag}: events of it still in the streams", {BACKWARD})
            else:
                diff.add(name, None, "MODEL_REMOVED", "no longer defined", BOTH)
        elif name not in old_models:
            if name in new_events:
                diff.add(name, None, "EVENT_ADDED", f"new event type {new_events[name]['tag']}")
            else:
                diff.add(name, None, "MODEL_ADDED", "new model")
        else:
            _compare_model(
                diff,
                name,
                old_models[name],
                new_models[name],
                old_events.get(name),
                new_events.get(name),
                old["components"][name],
                new["components"][name],
            )
    return sorted(diff.changes, key=lambda c: (c.model, c.field or "", c.rule, c.detail))


def affected_models(document: Document, changed: Iterable[str]) -> set[str]:
    """Models whose schema is or reaches (through ``$ref``) one of the ``changed`` models."""
    references = {name: _refs(schema) for name, schema in document["components"].items()}
    affected = set(changed)
    grew = True
    while grew:
        grew = False
        for name, refs in references.items():
            if name not in affected and refs & affected:
                affected.add(name)
                grew = True
    return affected


def contained_models(document: Document, model: str) -> set[str]:
    """The model and every model it contains (through ``$ref``), transitively."""
    components = document["components"]
    found = {model}
    todo = [model]
    while todo:
        for ref in _refs(components.get(todo.pop(), {})):
            if ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


@dataclass
class _Diff:
    lib: str
    changes: list[Change] = field(default_factory=list)

    def add(self, model: str, path: str | None, rule: str, detail: str, breaks: Iterable[str] = ()) -> None:
        self.changes.append(Change(self.lib, model, path, rule, detail, frozenset(breaks)))


def _compare_model(
    diff: _Diff,
    name: str,
    old_meta: Mapping[str, Any],
    new_meta: Mapping[str, Any],
    old_event: Mapping[str, Any] | None,
    new_event: Mapping[str, Any] | None,
    old_schema: Mapping[str, Any],
    new_schema: Mapping[str, Any],
) -> None:
    old_tag_field, new_tag_field = old_meta.get("tag_field"), new_meta.get("tag_field")
    if old_meta.get("tag") != new_meta.get("tag"):
        diff.add(name, None, "TAG_CHANGED", f"{old_meta.get('tag')!r} -> {new_meta.get('tag')!r}", BOTH)
    if old_tag_field != new_tag_field:
        diff.add(name, None, "TAG_FIELD_CHANGED", f"{old_tag_field!r} -> {new_tag_field!r}", BOTH)
    if old_event and new_event:
        old_version, new_version = old_event["schema_version"], new_event["schema_version"]
        if old_version != new_version:
            lowered = new_version < old_version
            note = " (lowered: consumers that compare versions see an older one)" if lowered else ""
            diff.add(
                name, None, "EVENT_VERSION_CHANGED", f"{old_version} -> {new_version}{note}", BOTH if lowered else ()
            )
    if old_meta.get("array_like") != new_meta.get("array_like"):
        diff.add(
            name,
            None,
            "ENCODING_CHANGED",
            f"array_like {old_meta.get('array_like')} -> {new_meta.get('array_like')}",
            BOTH,
        )
    elif new_meta.get("array_like") and old_meta.get("fields") != new_meta.get("fields"):
        old_fields, new_fields = old_meta.get("fields"), new_meta.get("fields")
        diff.add(name, None, "ENCODING_CHANGED", f"array_like field order {old_fields} -> {new_fields}", BOTH)
    old_closed = bool(old_meta.get("forbid_unknown_fields"))
    new_closed = bool(new_meta.get("forbid_unknown_fields"))
    if new_closed and not old_closed:
        diff.add(name, None, "MODEL_CLOSED", "forbid_unknown_fields turned on")
    elif old_closed and not new_closed:
        diff.add(name, None, "MODEL_OPENED", "forbid_unknown_fields turned off")

    if old_meta.get("array_like") != new_meta.get("array_like"):
        return  # every field moved between an object and an array: the encoding change says it all
    skip = {old_tag_field, new_tag_field} - {None}
    old_props, old_required = _fields(old_meta, old_schema, skip)
    new_props, new_required = _fields(new_meta, new_schema, skip)
    omits_defaults = bool(old_meta.get("omit_defaults") or new_meta.get("omit_defaults"))

    removed = [k for k in old_props if k not in new_props]
    added = [k for k in new_props if k not in old_props]
    for old_name, new_name in _renames(removed, added, old_props, new_props, old_required, new_required):
        removed.remove(old_name)
        added.remove(new_name)
        diff.add(
            name,
            new_name,
            "FIELD_RENAMED",
            f"{old_name!r} -> {new_name!r}: each version misses the other's value",
            BOTH,
        )
    for key in removed:
        breaks = {FORWARD}
        if old_required & {key}:
            why = "old readers require it"
        else:
            why = "old readers read their default in place of the value"
        if new_closed:
            breaks.add(BACKWARD)
            why += "; new readers forbid it in old data"
        diff.add(name, key, "FIELD_REMOVED", why, breaks)
    for key in added:
        closed_note = "; the old model forbids unknown fields, so old readers reject new data" if old_closed else ""
        closed_breaks = {FORWARD} if old_closed else set()
        if key in new_required:
            diff.add(
                name,
                key,
                "FIELD_ADDED_REQUIRED",
                "new readers fail on old data without it" + closed_note,
                {BACKWARD} | closed_breaks,
            )
        else:
            diff.add(
                name,
                key,
                "FIELD_ADDED_OPTIONAL",
                f"default {_default_text(new_props[key])}" + closed_note,
                closed_breaks,
            )
    for key in old_props.keys() & new_props.keys():
        _compare_field(diff, name, key, old_props[key], new_props[key], old_required, new_required, omits_defaults)

    if not diff.changes or all(c.model != name for c in diff.changes):
        if _canonical(old_schema) != _canonical(new_schema):
            diff.add(name, None, "DOCS_CHANGED", "titles, descriptions or examples")


def _fields(meta: Mapping[str, Any], schema: Mapping[str, Any], skip: set[Any]) -> tuple[dict[str, Any], set[str]]:
    """(schema by field name, required field names) of an object or array_like model."""
    if meta.get("array_like"):
        # [tag?, field, ...]: positional; the first minItems positions are required.
        names = [*(["$tag"] if meta.get("tag") else []), *meta.get("fields", [])]
        props = dict(zip(names, schema.get("prefixItems", []), strict=False))
        required = set(names[: schema.get("minItems", 0)])
    else:
        props = dict(schema.get("properties", {}))
        required = set(schema.get("required", ()))
    return {k: v for k, v in props.items() if k not in skip and k != "$tag"}, required


def _renames(
    removed: list[str],
    added: list[str],
    old_props: Mapping[str, Any],
    new_props: Mapping[str, Any],
    old_required: set[str],
    new_required: set[str],
) -> list[tuple[str, str]]:
    """Pairs (old name, new name) of a removed and an added field of the same schema and optionality."""
    pairs = []
    free = list(added)
    for old_name in removed:
        for new_name in free:
            same_type = _normalized(old_props[old_name]) == _normalized(new_props[new_name])
            if same_type and (old_name in old_required) == (new_name in new_required):
                pairs.append((old_name, new_name))
                free.remove(new_name)
                break
    return pairs


def _compare_field(
    diff: _Diff,
    model: str,
    key: str,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_required: set[str],
    new_required: set[str],
    omits_defaults: bool,
) -> None:
    was_required, is_required = key in old_required, key in new_required
    if was_required and not is_required:
        breaks: Iterable[str] = {FORWARD} if omits_defaults else ()
        why = "new writers omit it when it holds the default; old readers require it" if omits_defaults else ""
        diff.add(model, key, "FIELD_MADE_OPTIONAL", why or f"default {_default_text(new)}", breaks)
    elif is_required and not was_required:
        diff.add(model, key, "FIELD_MADE_REQUIRED", "new readers fail on old data that omits it", {BACKWARD})
    elif not is_required and old.get("default") != new.get("default"):
        breaks = BOTH if omits_defaults else NONE
        why = "; writers omit defaults, so each side reads the other's default as its own" if omits_defaults else ""
        diff.add(model, key, "DEFAULT_CHANGED", f"{_default_text(old)} -> {_default_text(new)}{why}", breaks)
    _compare_types(diff, model, key, _normalized(old), _normalized(new))


def _compare_types(diff: _Diff, model: str, path: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    if old == new:
        return
    # An array whose items changed: report the items' change, at "field[]".
    if old.get("type") == new.get("type") == "array" and _without(old, "items") == _without(new, "items"):
        _compare_types(diff, model, f"{path}[]", _as_schema(old.get("items")), _as_schema(new.get("items")))
        return
    old_rest, old_null = _split_null(old)
    new_rest, new_null = _split_null(new)
    if old_rest == new_rest and old_null != new_null:
        if new_null:
            diff.add(model, path, "FIELD_MADE_NULLABLE", "old readers fail on new data holding null", {FORWARD})
        else:
            diff.add(model, path, "FIELD_MADE_NON_NULLABLE", "new readers fail on old data holding null", {BACKWARD})
        return
    if old_null == new_null and _is_enum(old_rest) and _is_enum(new_rest):
        old_values, new_values = old_rest["enum"], new_rest["enum"]
        gone = [v for v in old_values if v not in new_values]
        extra = [v for v in new_values if v not in old_values]
        if gone:
            diff.add(
                model,
                path,
                "ENUM_NARROWED",
                f"without {_values(gone)}: new readers fail on old data holding them",
                {BACKWARD},
            )
        if extra:
            diff.add(
                model,
                path,
                "ENUM_WIDENED",
                f"with {_values(extra)}: old readers fail on new data holding them",
                {FORWARD},
            )
        return
    backward_ok = accepts(new, old)
    forward_ok = accepts(old, new)
    breaks = ({BACKWARD} if not backward_ok else set()) | ({FORWARD} if not forward_ok else set())
    same_null = old_null == new_null
    if same_null and "type" in old_rest and _without(old_rest, *_CONSTRAINTS) == _without(new_rest, *_CONSTRAINTS):
        detail = _constraint_text(old_rest, new_rest)
        if breaks == {BACKWARD}:
            diff.add(model, path, "CONSTRAINT_TIGHTENED", f"{detail}: new readers reject old data", breaks)
        elif breaks == {FORWARD}:
            diff.add(model, path, "CONSTRAINT_LOOSENED", f"{detail}: old readers reject new data", breaks)
        else:
            diff.add(model, path, "CONSTRAINT_CHANGED", detail, breaks)
        return
    diff.add(model, path, "TYPE_CHANGED", f"{_type_text(old)} -> {_type_text(new)}", breaks)


# -- whether one schema accepts every value another accepts (conservative: False when unsure) ----------


def accepts(outer: Mapping[str, Any], inner: Mapping[str, Any]) -> bool:
    """True when every value valid for ``inner`` is valid for ``outer`` (component refs compare by name)."""
    outer_alts = _alternatives(outer)
    return all(any(_accepts_one(o, i) for o in outer_alts) for i in _alternatives(inner))


def _alternatives(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    schema = _normalized(schema)
    if "anyOf" in schema:
        rest = _without(schema, "anyOf")
        return [alt for option in schema["anyOf"] for alt in _alternatives({**rest, **option})]
    if "enum" in schema and len(schema["enum"]) > 1:
        return [{"enum": [value]} for value in schema["enum"]]
    if "const" in schema:
        return [{"enum": [schema["const"]]}]
    if isinstance(schema.get("type"), list):
        return [{**schema, "type": one} for one in schema["type"]]
    return [schema]


def _accepts_one(outer: dict[str, Any], inner: dict[str, Any]) -> bool:
    if outer == inner or not outer:
        return True
    if "$ref" in outer or "$ref" in inner:
        return outer.get("$ref") == inner.get("$ref")
    if "enum" in inner:
        (value,) = inner["enum"]
        return value in outer["enum"] if "enum" in outer else _value_fits(outer, value)
    if "enum" in outer or "type" not in inner or "type" not in outer:
        return False
    if not (outer["type"] == inner["type"] or (outer["type"] == "number" and inner["type"] == "integer")):
        return False
    return _constraints_accept(outer, inner)


def _constraints_accept(outer: dict[str, Any], inner: dict[str, Any]) -> bool:
    if _lower(outer) > _lower(inner) or _upper(outer) < _upper(inner):
        return False
    for low in ("minLength", "minItems", "minProperties"):
        if outer.get(low, 0) > inner.get(low, 0):
            return False
    for high in ("maxLength", "maxItems", "maxProperties"):
        if outer.get(high, math.inf) < inner.get(high, math.inf):
            return False
    for exact in ("pattern", "format", "contentEncoding"):
        if exact in outer and outer[exact] != inner.get(exact):
            return False
    if outer.get("uniqueItems") and not inner.get("uniqueItems"):
        return False
    if "multipleOf" in outer:
        step = inner.get("multipleOf")
        if step is None or not math.isclose(step / outer["multipleOf"], round(step / outer["multipleOf"])):
            return False
    for sub in ("items", "additionalProperties", "propertyNames"):
        if sub in outer or sub in inner:
            if not _accepts_sub(outer.get(sub, True), inner.get(sub, True)):
                return False
    if "prefixItems" in outer or "prefixItems" in inner:
        outer_items, inner_items = outer.get("prefixItems", []), inner.get("prefixItems", [])
        if len(outer_items) != len(inner_items):
            return False
        if not all(accepts(o, i) for o, i in zip(outer_items, inner_items, strict=True)):
            return False
    handled = _CONSTRAINTS | {"type", "format", "items", "additionalProperties", "prefixItems", "contentEncoding"}
    return all(inner.get(key) == value for key, value in outer.items() if key not in handled)


def _accepts_sub(outer: Any, inner: Any) -> bool:
    # JSON Schema allows a boolean here: true accepts anything, false nothing.
    if inner is False or outer is True:
        return True
    if outer is False:
        return False
    return accepts(outer, inner if isinstance(inner, dict) else {})


def _lower(schema: Mapping[str, Any]) -> tuple[float, int]:
    # (bound, 1 when exclusive): a bigger tuple is stricter.
    bounds = [(-math.inf, 0)]
    if "minimum" in schema:
        bounds.append((schema["minimum"], 0))
    if "exclusiveMinimum" in schema:
        bounds.append((schema["exclusiveMinimum"], 1))
    return max(bounds)


def _upper(schema: Mapping[str, Any]) -> tuple[float, int]:
    # (bound, -1 when exclusive): a smaller tuple is stricter.
    bounds = [(math.inf, 0)]
    if "maximum" in schema:
        bounds.append((schema["maximum"], 0))
    if "exclusiveMaximum" in schema:
        bounds.append((schema["exclusiveMaximum"], -1))
    return min(bounds)


def _value_fits(schema: dict[str, Any], value: Any) -> bool:
    kinds: dict[str, type | tuple[type, ...]] = {
        "null": type(None),
        "boolean": bool,
        "string": str,
        "integer": int,
        "number": (int, float),
    }
    expected = kinds.get(schema.get("type", ""))
    if expected is None or not isinstance(value, expected):
        return False
    if isinstance(value, bool) and schema["type"] != "boolean":
        return False
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", math.inf):
            return False
        return "pattern" not in schema or re.search(schema["pattern"], value) is not None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _lower(schema) <= (value, 0) and (value, 0) <= _upper(schema)
    return True


# -- helpers ---------------------------------------------------------------------------------------------


def _normalized(schema: Any) -> dict[str, Any]:
    """The schema without documentation (nor the default, compared on its own), recursively."""
    if not isinstance(schema, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DOC_KEYS or key == "default":
            continue
        if isinstance(value, dict) and key != "properties":
            out[key] = _normalized(value)
        elif isinstance(value, list) and key in ("anyOf", "prefixItems"):
            out[key] = [_normalized(item) for item in value]
        else:
            out[key] = value
    return out


def _canonical(value: Any) -> Any:
    """The schema with its ``required`` lists sorted: field order is no change of an object model."""
    if isinstance(value, dict):
        return {k: sorted(v) if k == "required" else _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    return value


def _as_schema(value: Any) -> dict[str, Any]:
    return _normalized(value) if isinstance(value, dict) else {}


def _without(schema: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}


def _split_null(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the schema without null, whether it allowed null)."""
    if schema == {"type": "null"}:
        return {}, True
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o != {"type": "null"}]
        if len(options) != len(schema["anyOf"]):
            rest = options[0] if len(options) == 1 else {"anyOf": options}
            return rest, True
    if "enum" in schema and None in schema["enum"]:
        return {**schema, "enum": [v for v in schema["enum"] if v is not None]}, True
    return schema, False


def _is_enum(schema: Mapping[str, Any]) -> bool:
    return set(schema) == {"enum"}


def _refs(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.removeprefix(REF_PREFIX))
            else:
                found |= _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _refs(item)
    return found


def _values(values: list[Any]) -> str:
    return ", ".join(repr(v) for v in values)


def _default_text(schema: Mapping[str, Any]) -> str:
    return repr(schema["default"]) if "default" in schema else "(unset)"


def _type_text(schema: Mapping[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).removeprefix(REF_PREFIX)
    if "anyOf" in schema:
        return " | ".join(_type_text(o) for o in schema["anyOf"])
    if "enum" in schema:
        return f"Literal[{_values(schema['enum'])}]"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array[{_type_text(_as_schema(schema.get('items')))}]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object[{_type_text(schema['additionalProperties'])}]"
    return str(kind)


def _constraint_text(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(k for k in _CONSTRAINTS if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k, '(none)')!r} -> {new.get(k, '(none)')!r}" for k in keys)
