"""Event payloads: tagged msgspec Structs, one decoder dispatches on their ``type`` tag.

Evolve an event compatibly: add fields with defaults only, never rename or reuse a removed
field's name, never change a tag. A breaking change is a new event type (``...V2``).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import msgspec

from flotilla_contracts.catalog import Money


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every event payload. The tag (``"<service>.<EventName>"``) is the event type."""

    # Bumped when the payload gains fields; carried in the envelope for consumers that care.
    schema_version: ClassVar[int] = 1


_tags: dict[type[Event], str] = {}


def event_type(cls: type[Event]) -> str:
    """The tag of an event class, e.g. ``"orders.OrderPlaced"`` (cached: it is on every hot path)."""
    tag = _tags.get(cls)
    if tag is None:
        found = msgspec.inspect.type_info(cls).tag  # type: ignore[attr-defined]
        if not isinstance(found, str):
            raise TypeError(f"{cls.__name__} has no string tag; declare it with tag='<service>.<Name>'")
        tag = _tags[cls] = found
    return tag


# catalog.events


class ProductCreated(Event, frozen=True, kw_only=True, tag="catalog.ProductCreated"):
    product_id: uuid.UUID
    sku: str
    name: str
    price: Money
    active: bool
    version: int


class ProductUpdated(Event, frozen=True, kw_only=True, tag="catalog.ProductUpdated"):
    product_id: uuid.UUID
    sku: str
    name: str
    price: Money
    active: bool
    version: int


# orders.events


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    sku: str
    quantity: int
    unit_price: Money


class OrderPlaced(Event, frozen=True, kw_only=True, tag="orders.OrderPlaced"):
    order_id: uuid.UUID
    customer_id: str
    lines: list[OrderLine]
    total: Money
