"""Event payloads: tagged msgspec Structs, one decoder dispatches on their ``type`` tag.

Evolve an event compatibly: add fields with defaults only, never rename or reuse a removed
field's name, never change a tag. A breaking change is a new event type (``...V2``).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

import msgspec

from flotilla_contracts.catalog import Money
from flotilla_contracts.orders import OrderLine


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


# Streams: one per producing service; each consuming service reads it with its own group.
CATALOG_EVENTS = "catalog.events"
ORDERS_EVENTS = "orders.events"
INVENTORY_EVENTS = "inventory.events"
PAYMENTS_EVENTS = "payments.events"


# catalog.events


class ProductCreated(Event, frozen=True, kw_only=True, tag="catalog.ProductCreated"):
    product_id: uuid.UUID
    sku: str
    name: str
    price: Money
    active: bool
    version: int


class ProductPriceChanged(Event, frozen=True, kw_only=True, tag="catalog.ProductPriceChanged"):
    product_id: uuid.UUID
    sku: str
    price: Money
    previous_price: Money
    version: int


class ProductDeactivated(Event, frozen=True, kw_only=True, tag="catalog.ProductDeactivated"):
    product_id: uuid.UUID
    sku: str
    version: int


# orders.events: the saga's orchestrator asks (OrderPlaced, PaymentRequested) and decides
# (OrderConfirmed, OrderCancelled); inventory and payments act on the decisions too.


class OrderPlaced(Event, frozen=True, kw_only=True, tag="orders.OrderPlaced"):
    """Asks inventory to reserve the lines for the order."""

    order_id: uuid.UUID
    customer_id: str
    lines: list[OrderLine]
    total: Money


class PaymentRequested(Event, frozen=True, kw_only=True, tag="orders.PaymentRequested"):
    """Asks payments to capture the order's total (its stock is reserved)."""

    order_id: uuid.UUID
    customer_id: str
    amount: Money
    card_token: str


class OrderConfirmed(Event, frozen=True, kw_only=True, tag="orders.OrderConfirmed"):
    """Final: inventory commits the reservation; the customer is told."""

    order_id: uuid.UUID
    customer_id: str
    total: Money


class OrderCancelled(Event, frozen=True, kw_only=True, tag="orders.OrderCancelled"):
    """Final: inventory releases what it reserved for the order (or, if the order has not reached
    it yet, makes sure it never will); payments refunds a capture (or refuses a later request)."""

    order_id: uuid.UUID
    customer_id: str
    reason: str


# inventory.events


class StockReserved(Event, frozen=True, kw_only=True, tag="inventory.StockReserved"):
    order_id: uuid.UUID


class Shortage(msgspec.Struct, frozen=True, kw_only=True):
    product_id: uuid.UUID
    requested: int
    available: int


class StockRejected(Event, frozen=True, kw_only=True, tag="inventory.StockRejected"):
    """Nothing was reserved for the order: some line has too little stock (or no stock row)."""

    order_id: uuid.UUID
    reason: str
    shortages: list[Shortage] = []


# payments.events


class PaymentCaptured(Event, frozen=True, kw_only=True, tag="payments.PaymentCaptured"):
    order_id: uuid.UUID
    payment_id: uuid.UUID
    amount: Money


class PaymentDeclined(Event, frozen=True, kw_only=True, tag="payments.PaymentDeclined"):
    order_id: uuid.UUID
    reason: str


class PaymentRefunded(Event, frozen=True, kw_only=True, tag="payments.PaymentRefunded"):
    """A captured payment was given back because its order was cancelled."""

    order_id: uuid.UUID
    payment_id: uuid.UUID
    amount: Money
