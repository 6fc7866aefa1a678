"""Every compatibility rule, positive and negative, on small models defined here.

Two versions of one model share a class name (the schema's component name): each test builds its
old and new models with ``msgspec.defstruct`` and compares their snapshot documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import pytest
from release.compat import BACKWARD, BOTH, FORWARD, RULES, Change, accepts, compare, needed_bump
from release.schemas import build_document

from flotilla_contracts.events import Event

Fields = list[tuple[str, Any] | tuple[str, Any, Any]]


def model(name: str, fields: Fields, **config: Any) -> type[msgspec.Struct]:
    return msgspec.defstruct(name, fields, kw_only=True, frozen=True, **config)


def event(name: str, fields: Fields, *, tag: str | None = None, version: int = 1, **config: Any) -> type[Event]:
    cls = msgspec.defstruct(
        name,
        fields,
        bases=(Event,),
        kw_only=True,
        frozen=True,
        tag=tag or f"orders.{name}",
        namespace={"schema_version": version},
        **config,
    )
    return cls  # type: ignore[return-value]


def diff(old: Sequence[type[msgspec.Struct]], new: Sequence[type[msgspec.Struct]]) -> list[Change]:
    return compare(build_document(old, lib="demo"), build_document(new, lib="demo"))


def found(changes: list[Change]) -> list[tuple[str, str | None, str, frozenset[str]]]:
    return [(c.model, c.field, c.rule, c.breaks) for c in changes]


BASE: Fields = [("order_id", str), ("total", int)]


def test_identical_models_have_no_change() -> None:
    assert diff([event("OrderConfirmed", BASE)], [event("OrderConfirmed", BASE)]) == []
    assert needed_bump([]) is None


# -- additions ------------------------------------------------------------------------------------------


def test_new_optional_field_with_a_default_is_compatible_and_needs_minor() -> None:
    changes = diff([event("OrderConfirmed", BASE)], [event("OrderConfirmed", [*BASE, ("note", str, "")])])
    assert found(changes) == [("OrderConfirmed", "note", "FIELD_ADDED_OPTIONAL", frozenset())]
    assert needed_bump(changes) == "minor"


def test_new_optional_field_on_a_model_forbidding_unknown_fields_breaks_forward() -> None:
    old = model("OrderCreate", BASE, forbid_unknown_fields=True)
    new = model("OrderCreate", [*BASE, ("note", str, "")], forbid_unknown_fields=True)
    assert found(diff([old], [new])) == [("OrderCreate", "note", "FIELD_ADDED_OPTIONAL", frozenset({FORWARD}))]


def test_new_required_field_breaks_backward() -> None:
    changes = diff([event("OrderConfirmed", BASE)], [event("OrderConfirmed", [*BASE, ("channel", str)])])
    assert found(changes) == [("OrderConfirmed", "channel", "FIELD_ADDED_REQUIRED", frozenset({BACKWARD}))]
    assert needed_bump(changes) == "major"


def test_new_event_type_and_new_model_are_compatible() -> None:
    old = [event("OrderConfirmed", BASE)]
    new = [*old, event("OrderShipped", BASE), model("Parcel", [("weight", int)])]
    changes = diff(old, new)
    assert found(changes) == [
        ("OrderShipped", None, "EVENT_ADDED", frozenset()),
        ("Parcel", None, "MODEL_ADDED", frozenset()),
    ]
    assert needed_bump(changes) == "minor"


# -- removals and renames -------------------------------------------------------------------------------


def test_removed_required_field_breaks_forward() -> None:
    changes = diff([event("OrderConfirmed", BASE)], [event("OrderConfirmed", BASE[:1])])
    assert found(changes) == [("OrderConfirmed", "total", "FIELD_REMOVED", frozenset({FORWARD}))]
    assert "old readers require it" in changes[0].detail


def test_removed_optional_field_still_breaks_forward_old_readers_read_the_default() -> None:
    changes = diff([event("OrderConfirmed", [*BASE, ("note", str, "")])], [event("OrderConfirmed", BASE)])
    assert found(changes) == [("OrderConfirmed", "note", "FIELD_REMOVED", frozenset({FORWARD}))]
    assert "default" in changes[0].detail


def test_removed_field_of_a_model_forbidding_unknown_fields_breaks_both_ways() -> None:
    old = model("OrderCreate", BASE, forbid_unknown_fields=True)
    new = model("OrderCreate", BASE[:1], forbid_unknown_fields=True)
    assert found(diff([old], [new])) == [("OrderCreate", "total", "FIELD_REMOVED", BOTH)]


def test_renamed_field_is_one_change_breaking_both_ways() -> None:
    old = event("OrderConfirmed", [("order_id", str), ("total", int)])
    new = event("OrderConfirmed", [("order_id", str), ("amount", int)])
    changes = diff([old], [new])
    assert found(changes) == [("OrderConfirmed", "amount", "FIELD_RENAMED", BOTH)]
    assert "'total' -> 'amount'" in changes[0].detail


def test_a_removal_and_an_addition_of_another_type_are_not_a_rename() -> None:
    old = event("OrderConfirmed", [("order_id", str), ("total", int)])
    new = event("OrderConfirmed", [("order_id", str), ("amount", str, "")])
    assert found(diff([old], [new])) == [
        ("OrderConfirmed", "amount", "FIELD_ADDED_OPTIONAL", frozenset()),
        ("OrderConfirmed", "total", "FIELD_REMOVED", frozenset({FORWARD})),
    ]


def test_removed_event_type_breaks_backward() -> None:
    old = [event("OrderConfirmed", BASE), event("OrderShipped", BASE)]
    changes = diff(old, old[:1])
    assert found(changes) == [("OrderShipped", None, "EVENT_REMOVED", frozenset({BACKWARD}))]


def test_removed_model_breaks() -> None:
    old = [model("Parcel", [("weight", int)]), model("Box", [("size", int)])]
    assert found(diff(old, old[1:])) == [("Parcel", None, "MODEL_REMOVED", BOTH)]


# -- types ----------------------------------------------------------------------------------------------


def test_int_to_str_breaks_both_ways() -> None:
    changes = diff([event("OrderConfirmed", BASE)], [event("OrderConfirmed", [("order_id", str), ("total", str)])])
    assert found(changes) == [("OrderConfirmed", "total", "TYPE_CHANGED", BOTH)]
    assert "integer -> string" in changes[0].detail


def test_int_to_float_breaks_forward_only() -> None:
    new = event("OrderConfirmed", [("order_id", str), ("total", float)])
    assert found(diff([event("OrderConfirmed", BASE)], [new])) == [
        ("OrderConfirmed", "total", "TYPE_CHANGED", frozenset({FORWARD}))
    ]


def test_uuid_to_str_is_a_type_change_not_a_loosened_constraint() -> None:
    import uuid

    old = event("OrderConfirmed", [("order_id", uuid.UUID)])
    new = event("OrderConfirmed", [("order_id", str)])
    assert found(diff([old], [new])) == [("OrderConfirmed", "order_id", "TYPE_CHANGED", frozenset({FORWARD}))]


def test_changed_array_item_type_is_reported_on_the_items() -> None:
    old = event("OrderPlaced", [("quantities", list[int])])
    new = event("OrderPlaced", [("quantities", list[str])])
    assert found(diff([old], [new])) == [("OrderPlaced", "quantities[]", "TYPE_CHANGED", BOTH)]


def test_changed_reference_to_another_model_breaks_both_ways() -> None:
    money = model("Money", [("amount", int)])
    cents = model("Cents", [("amount", int)])
    old = event("OrderPlaced", [("total", money)])
    new = event("OrderPlaced", [("total", cents)])
    changes = [c for c in diff([money, old], [money, cents, new]) if c.model == "OrderPlaced"]
    assert found(changes) == [("OrderPlaced", "total", "TYPE_CHANGED", BOTH)]


def test_a_change_inside_a_contained_model_is_reported_on_that_model() -> None:
    old_money, new_money = model("Money", [("amount", int)]), model("Money", [("amount", int), ("currency", str)])
    old = [old_money, event("OrderPlaced", [("total", old_money)])]
    new = [new_money, event("OrderPlaced", [("total", new_money)])]
    assert found(diff(old, new)) == [("Money", "currency", "FIELD_ADDED_REQUIRED", frozenset({BACKWARD}))]


def test_made_nullable_breaks_forward_and_made_non_nullable_breaks_backward() -> None:
    plain = event("OrderConfirmed", [("note", str)])
    nullable = event("OrderConfirmed", [("note", str | None)])
    assert found(diff([plain], [nullable])) == [("OrderConfirmed", "note", "FIELD_MADE_NULLABLE", frozenset({FORWARD}))]
    assert found(diff([nullable], [plain])) == [
        ("OrderConfirmed", "note", "FIELD_MADE_NON_NULLABLE", frozenset({BACKWARD}))
    ]


def test_same_type_written_differently_is_no_change() -> None:
    old = event("OrderConfirmed", [("note", str | None)])
    new = event("OrderConfirmed", [("note", None | str)])
    assert diff([old], [new]) == []


# -- enums and Literals ---------------------------------------------------------------------------------


def test_narrowed_literal_breaks_backward() -> None:
    old = event("OrderConfirmed", [("status", Literal["a", "b", "c"])])
    new = event("OrderConfirmed", [("status", Literal["a", "b"])])
    changes = diff([old], [new])
    assert found(changes) == [("OrderConfirmed", "status", "ENUM_NARROWED", frozenset({BACKWARD}))]
    assert "'c'" in changes[0].detail


def test_widened_literal_breaks_forward() -> None:
    old = event("OrderConfirmed", [("status", Literal["a", "b"])])
    new = event("OrderConfirmed", [("status", Literal["a", "b", "c"])])
    changes = diff([old], [new])
    assert found(changes) == [("OrderConfirmed", "status", "ENUM_WIDENED", frozenset({FORWARD}))]
    assert changes[0].breaking and needed_bump(changes) == "major"


def test_widened_nullable_literal_is_still_an_enum_change() -> None:
    old = event("OrderConfirmed", [("status", Literal["a"] | None, None)])
    new = event("OrderConfirmed", [("status", Literal["a", "b"] | None, None)])
    assert found(diff([old], [new])) == [("OrderConfirmed", "status", "ENUM_WIDENED", frozenset({FORWARD}))]


def test_literal_with_the_same_values_in_another_order_is_no_change() -> None:
    old = event("OrderConfirmed", [("status", Literal["a", "b"])])
    new = event("OrderConfirmed", [("status", Literal["b", "a"])])
    assert diff([old], [new]) == []


# -- tags and versions ----------------------------------------------------------------------------------


def test_changed_tag_breaks_both_ways() -> None:
    old = event("OrderConfirmed", BASE, tag="orders.OrderConfirmed")
    new = event("OrderConfirmed", BASE, tag="orders.Confirmed")
    assert found(diff([old], [new])) == [("OrderConfirmed", None, "TAG_CHANGED", BOTH)]


def test_changed_tag_field_breaks_both_ways() -> None:
    old = event("OrderConfirmed", BASE)
    new = event("OrderConfirmed", BASE, tag_field="kind")
    assert found(diff([old], [new])) == [("OrderConfirmed", None, "TAG_FIELD_CHANGED", BOTH)]


def test_same_tag_on_a_renamed_class_is_not_a_tag_change() -> None:
    old = [event("OrderConfirmed", BASE, tag="orders.OrderConfirmed")]
    new = [event("OrderConfirmed", BASE, tag="orders.OrderConfirmed")]
    assert all(c.rule not in ("TAG_CHANGED", "TAG_FIELD_CHANGED") for c in diff(old, new))


def test_raised_event_version_is_compatible_and_lowered_breaks() -> None:
    v1, v2 = event("OrderConfirmed", BASE, version=1), event("OrderConfirmed", BASE, version=2)
    assert found(diff([v1], [v2])) == [("OrderConfirmed", None, "EVENT_VERSION_CHANGED", frozenset())]
    assert found(diff([v2], [v1])) == [("OrderConfirmed", None, "EVENT_VERSION_CHANGED", BOTH)]


# -- constraints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_type", "new_type"),
    [
        (Annotated[int, msgspec.Meta(ge=0)], Annotated[int, msgspec.Meta(ge=1)]),
        (int, Annotated[int, msgspec.Meta(le=100)]),
        (Annotated[str, msgspec.Meta(max_length=200)], Annotated[str, msgspec.Meta(max_length=100)]),
        (str, Annotated[str, msgspec.Meta(pattern="^[A-Z]+$")]),
        (Annotated[list[int], msgspec.Meta(max_length=50)], Annotated[list[int], msgspec.Meta(max_length=10)]),
        (Annotated[int, msgspec.Meta(ge=0)], Annotated[int, msgspec.Meta(gt=0)]),
    ],
)
def test_tightened_constraint_breaks_backward(old_type: Any, new_type: Any) -> None:
    old = event("OrderConfirmed", [("value", old_type)])
    new = event("OrderConfirmed", [("value", new_type)])
    assert found(diff([old], [new])) == [("OrderConfirmed", "value", "CONSTRAINT_TIGHTENED", frozenset({BACKWARD}))]
    assert found(diff([new], [old])) == [("OrderConfirmed", "value", "CONSTRAINT_LOOSENED", frozenset({FORWARD}))]


def test_constraint_moved_both_ways_breaks_both() -> None:
    old = event("OrderConfirmed", [("value", Annotated[int, msgspec.Meta(ge=0, le=10)])])
    new = event("OrderConfirmed", [("value", Annotated[int, msgspec.Meta(ge=5, le=20)])])
    assert found(diff([old], [new])) == [("OrderConfirmed", "value", "CONSTRAINT_CHANGED", BOTH)]


def test_description_only_change_is_docs_and_needs_patch() -> None:
    old = event("OrderConfirmed", [("value", Annotated[int, msgspec.Meta(ge=0, description="old words")])])
    new = event("OrderConfirmed", [("value", Annotated[int, msgspec.Meta(ge=0, description="new words")])])
    changes = diff([old], [new])
    assert found(changes) == [("OrderConfirmed", None, "DOCS_CHANGED", frozenset())]
    assert needed_bump(changes) == "patch"


# -- defaults, optionality, model settings --------------------------------------------------------------


def test_field_made_required_breaks_backward_and_made_optional_is_compatible() -> None:
    required = event("OrderConfirmed", [("note", str)])
    optional = event("OrderConfirmed", [("note", str, "")])
    assert found(diff([optional], [required])) == [
        ("OrderConfirmed", "note", "FIELD_MADE_REQUIRED", frozenset({BACKWARD}))
    ]
    assert found(diff([required], [optional])) == [("OrderConfirmed", "note", "FIELD_MADE_OPTIONAL", frozenset())]


def test_field_made_optional_breaks_forward_when_the_model_omits_defaults() -> None:
    required = event("OrderConfirmed", [("note", str)], omit_defaults=True)
    optional = event("OrderConfirmed", [("note", str, "")], omit_defaults=True)
    assert found(diff([required], [optional])) == [
        ("OrderConfirmed", "note", "FIELD_MADE_OPTIONAL", frozenset({FORWARD}))
    ]


def test_changed_default_is_compatible_unless_defaults_are_omitted() -> None:
    old, new = event("OrderConfirmed", [("note", str, "a")]), event("OrderConfirmed", [("note", str, "b")])
    assert found(diff([old], [new])) == [("OrderConfirmed", "note", "DEFAULT_CHANGED", frozenset())]
    old = event("OrderConfirmed", [("note", str, "a")], omit_defaults=True)
    new = event("OrderConfirmed", [("note", str, "b")], omit_defaults=True)
    assert found(diff([old], [new])) == [("OrderConfirmed", "note", "DEFAULT_CHANGED", BOTH)]


def test_closing_a_model_is_flagged_and_opening_it_is_compatible() -> None:
    open_, closed = model("OrderCreate", BASE), model("OrderCreate", BASE, forbid_unknown_fields=True)
    assert found(diff([open_], [closed])) == [("OrderCreate", None, "MODEL_CLOSED", frozenset())]
    assert found(diff([closed], [open_])) == [("OrderCreate", None, "MODEL_OPENED", frozenset())]


def test_array_like_encoding_and_its_field_order_are_the_wire_format() -> None:
    plain = model("Point", [("x", int), ("y", int)])
    array = model("Point", [("x", int), ("y", int)], array_like=True)
    swapped = model("Point", [("y", int), ("x", int)], array_like=True)
    assert found(diff([plain], [array])) == [("Point", None, "ENCODING_CHANGED", BOTH)]
    assert found(diff([array], [swapped])) == [("Point", None, "ENCODING_CHANGED", BOTH)]
    reordered = model("Point", [("y", int), ("x", int)])
    assert diff([plain], [reordered]) == []  # by name: order does not matter


# -- the bump a set of changes needs, and the relation behind the directions ----------------------------


def test_needed_bump_is_the_largest_any_change_needs() -> None:
    docs = Change("demo", "M", None, "DOCS_CHANGED", "")
    added = Change("demo", "M", "f", "FIELD_ADDED_OPTIONAL", "")
    removed = Change("demo", "M", "g", "FIELD_REMOVED", "", frozenset({FORWARD}))
    assert needed_bump([docs]) == "patch"
    assert needed_bump([docs, added]) == "minor"
    assert needed_bump([added, removed, docs]) == "major"


def test_every_rule_has_an_id_and_a_description() -> None:
    assert all(rule.isupper() and text for rule, text in RULES.items())


def test_accepts_is_the_subset_relation_of_values() -> None:
    integer, number = {"type": "integer"}, {"type": "number"}
    assert accepts(number, integer) and not accepts(integer, number)
    assert accepts({"enum": ["a", "b"]}, {"enum": ["a"]}) and not accepts({"enum": ["a"]}, {"enum": ["a", "b"]})
    assert accepts({"type": "string"}, {"enum": ["a"]})
    assert not accepts({"type": "string", "maxLength": 1}, {"enum": ["ab"]})
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert accepts(nullable, {"type": "string"}) and not accepts({"type": "string"}, nullable)
    assert accepts({"type": "integer", "minimum": 0}, {"type": "integer", "exclusiveMinimum": 0})
    assert not accepts({"type": "integer", "exclusiveMinimum": 0}, {"type": "integer", "minimum": 0})
