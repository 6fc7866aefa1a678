"""Inventory rules: pure functions, no I/O."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flotilla_contracts.events import Shortage
from flotilla_contracts.orders import OrderLine

# The most units of one product the inventory counts (StockSet's bound): the columns stay well
# inside 32-bit integers, however adjustments add up.
MAX_ON_HAND = 10**9
REASON_LIMIT = 500  # the reservations.reason column

CANCELLED_BEFORE_RESERVATION = "cancelled before reservation"


class StockRuleError(ValueError):
    """A change that is well formed but breaks a stock rule given the current stock (answered 409)."""


class InvalidChange(ValueError):
    """A change that no stock could make valid, such as an adjustment of zero units (answered 422)."""


@dataclass(frozen=True)
class StockChange:
    """A change of units on hand, checked: what ``on_hand`` becomes and by how much it moves."""

    on_hand_after: int
    delta: int


def check_set(*, on_hand: int, reserved: int, new_on_hand: int) -> StockChange:
    """Setting the counted units on hand: never below what orders hold."""
    if new_on_hand < reserved:
        raise StockRuleError(
            f"on_hand cannot be set to {new_on_hand}: {reserved} units are reserved for orders in flight"
        )
    if new_on_hand > MAX_ON_HAND:
        raise StockRuleError(f"on_hand cannot exceed {MAX_ON_HAND}")
    return StockChange(on_hand_after=new_on_hand, delta=new_on_hand - on_hand)


def check_adjustment(*, on_hand: int, reserved: int, delta: int) -> StockChange:
    """Units received (+) or lost (-): never below zero, never below what orders hold."""
    if delta == 0:
        raise InvalidChange("an adjustment of 0 units changes nothing; give a positive or negative delta")
    after = on_hand + delta
    if after < 0:
        raise StockRuleError(f"removing {-delta} units would leave {after} on hand: only {on_hand} are on hand")
    if after < reserved:
        raise StockRuleError(
            f"removing {-delta} units would leave {after} on hand, below the {reserved} reserved for orders in flight"
        )
    if after > MAX_ON_HAND:
        raise StockRuleError(f"adding {delta} units would make {after} on hand, above the limit of {MAX_ON_HAND}")
    return StockChange(on_hand_after=after, delta=delta)


def sum_lines(lines: Iterable[OrderLine]) -> dict[uuid.UUID, int]:
    """Units per product of an order (two lines of one product count as one line), in product order.

    The order is the lock order: every transaction that locks several stock rows locks them by
    ascending product id, so two of them never wait on each other in a cycle.
    Raises ValueError for a quantity below 1, which the orders service never sends.
    """
    totals: dict[uuid.UUID, int] = {}
    for line in lines:
        if line.quantity < 1:
            raise ValueError(f"line of product {line.product_id} has quantity {line.quantity}")
        totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
    return dict(sorted(totals.items()))


def shortages(wanted: Mapping[uuid.UUID, int], available: Mapping[uuid.UUID, int]) -> list[Shortage]:
    """The products of which fewer units are available than wanted (a product without stock has 0)."""
    return [
        Shortage(product_id=product_id, requested=quantity, available=available.get(product_id, 0))
        for product_id, quantity in wanted.items()
        if available.get(product_id, 0) < quantity
    ]


def rejection_reason(found: list[Shortage]) -> str:
    return f"insufficient stock for {len(found)} product(s)"


def released_reason(cancel_reason: str) -> str:
    text = f"order cancelled: {cancel_reason}" if cancel_reason else "order cancelled"
    return text[:REASON_LIMIT]


class Action(enum.Enum):
    """What an event does to an order's reservation. (OrderPlaced needs no rule: it reserves only
    for an order without a reservation row, whatever the status of one, which the row's claim decides.)"""

    NOTHING = "nothing"
    RELEASE = "release"  # give the held units back: reserved -= q
    TOMBSTONE = "tombstone"  # no reservation yet: record a released one, so none is ever made
    COMMIT = "commit"  # the units leave: on_hand -= q, reserved -= q


def on_order_cancelled(status: str | None) -> Action:
    if status is None:
        return Action.TOMBSTONE
    if status == "reserved":
        return Action.RELEASE
    return Action.NOTHING  # released or rejected: nothing held; committed: the units are gone


def on_order_confirmed(status: str | None) -> Action:
    return Action.COMMIT if status == "reserved" else Action.NOTHING
