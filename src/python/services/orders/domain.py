"""Orders rules: pure functions, no I/O. Prices and totals, the saga's transitions, step deadlines,
and the Idempotency-Key decisions."""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flotilla_contracts.catalog import Money, Product
from flotilla_contracts.orders import OrderLine, OrderLineRequest, OrderStatus

# The largest amount a Money may hold (flotilla_contracts.catalog.MinorUnits): a total above it could
# not be decoded by the order's readers.
MAX_TOTAL = 10**12


class OrderRuleError(ValueError):
    """An order that is well formed but cannot be placed (answered 422)."""


# prices and totals


def priced_lines(requested: Sequence[OrderLineRequest], products: Mapping[uuid.UUID, Product]) -> list[OrderLine]:
    """The order's lines at the catalog's current prices; ``products`` holds those the catalog knows.

    Raises OrderRuleError naming the product for an unknown or inactive one, a product in two
    lines, and prices in more than one currency (an order is paid in one).
    """
    seen: set[uuid.UUID] = set()
    lines: list[OrderLine] = []
    for line in requested:
        if line.product_id in seen:
            raise OrderRuleError(f"product {line.product_id} is in two lines: give one line per product")
        seen.add(line.product_id)
        product = products.get(line.product_id)
        if product is None:
            raise OrderRuleError(f"unknown product {line.product_id}")
        if not product.active:
            raise OrderRuleError(f"product {product.sku} ({product.id}) is not for sale (inactive)")
        lines.append(
            OrderLine(product_id=product.id, sku=product.sku, quantity=line.quantity, unit_price=product.price)
        )
    currencies = sorted({line.unit_price.currency for line in lines})
    if len(currencies) > 1:
        raise OrderRuleError(f"an order is priced in one currency; these products are in {', '.join(currencies)}")
    return lines


def order_total(lines: Sequence[OrderLine]) -> Money:
    """The sum of the lines (one currency, see ``priced_lines``); raises OrderRuleError above MAX_TOTAL."""
    if not lines:
        raise OrderRuleError("an order has at least one line")
    amount = sum(line.unit_price.amount * line.quantity for line in lines)
    if amount > MAX_TOTAL:
        raise OrderRuleError(f"the total ({amount} minor units) is above the largest payable amount ({MAX_TOTAL})")
    return Money(amount, lines[0].unit_price.currency)


# the saga


class SagaEvent(enum.Enum):
    """What can happen to an order after it is placed."""

    STOCK_RESERVED = "StockReserved"
    STOCK_REJECTED = "StockRejected"
    PAYMENT_CAPTURED = "PaymentCaptured"
    PAYMENT_DECLINED = "PaymentDeclined"
    PAYMENT_REFUNDED = "PaymentRefunded"
    STEP_TIMED_OUT = "step deadline passed"


class FollowUp(enum.Enum):
    """The event orders publishes on a transition."""

    PAYMENT_REQUESTED = "PaymentRequested"
    ORDER_CONFIRMED = "OrderConfirmed"
    ORDER_CANCELLED = "OrderCancelled"


@dataclass(frozen=True)
class Transition:
    """What an event does to an order in a given status.

    ``to`` None means the status stays and the event is only recorded in the history (a late answer
    after compensation); ``once`` records it at most once per order (a duplicate adds nothing).
    ``note`` starts the history step's detail (the event's own detail follows); ``reason``, when set,
    is the cancel reason, else the event's.
    """

    to: OrderStatus | None
    step: str
    follow_up: FollowUp | None = None
    note: str = ""
    reason: str | None = None
    once: bool = False

    def detail(self, event_detail: str) -> str:
        return ": ".join(part for part in (self.note, event_detail) if part)


def _cancel(note: str, reason: str | None = None) -> Transition:
    return Transition(to="cancelled", step="cancelled", follow_up=FollowUp.ORDER_CANCELLED, note=note, reason=reason)


# (event, current status) -> transition. A pair missing here changes nothing and records nothing: a
# duplicate (the order is past that step) or an answer that can no longer matter (a decline after
# the order was cancelled for another reason).
TRANSITIONS: Mapping[tuple[SagaEvent, str], Transition] = {
    (SagaEvent.STOCK_RESERVED, "awaiting_stock"): Transition(
        to="awaiting_payment",
        step="stock_reserved",
        follow_up=FollowUp.PAYMENT_REQUESTED,
        note="stock reserved; payment requested",
    ),
    (SagaEvent.STOCK_RESERVED, "cancelled"): Transition(
        to=None,
        step="stock_reserved_after_cancellation",
        note="stock reserved after cancellation; inventory releases it on OrderCancelled",
        once=True,
    ),
    (SagaEvent.STOCK_REJECTED, "awaiting_stock"): _cancel("stock rejected"),
    (SagaEvent.PAYMENT_CAPTURED, "awaiting_payment"): Transition(
        to="confirmed", step="payment_captured", follow_up=FollowUp.ORDER_CONFIRMED, note="order confirmed"
    ),
    (SagaEvent.PAYMENT_CAPTURED, "cancelled"): Transition(
        to=None,
        step="payment_captured_after_cancellation",
        note="payment captured after cancellation; payments refunds it on OrderCancelled",
        once=True,
    ),
    (SagaEvent.PAYMENT_DECLINED, "awaiting_payment"): _cancel("payment declined"),
    **{
        (SagaEvent.PAYMENT_REFUNDED, status): Transition(to=None, step="payment_refunded", once=True)
        for status in ("awaiting_stock", "awaiting_payment", "confirmed", "cancelled")
    },
    (SagaEvent.STEP_TIMED_OUT, "awaiting_stock"): _cancel("stock step timed out", reason="stock step timed out"),
    (SagaEvent.STEP_TIMED_OUT, "awaiting_payment"): _cancel("payment step timed out", reason="payment step timed out"),
}

WAITING_STATUSES: tuple[OrderStatus, ...] = ("awaiting_stock", "awaiting_payment")

_MOVES: Mapping[SagaEvent, list[tuple[str, Transition]]] = {
    event: [(status, t) for (e, status), t in TRANSITIONS.items() if e is event and t.to is not None]
    for event in SagaEvent
}


def moves_of(event: SagaEvent) -> list[tuple[str, Transition]]:
    """The statuses ``event`` moves an order from, with the transition from each."""
    return _MOVES[event]


def transition_for(event: SagaEvent, status: str) -> Transition | None:
    """What ``event`` does to an order in ``status``; None: nothing (a duplicate or out-of-order event)."""
    return TRANSITIONS.get((event, status))


def step_deadline(now: datetime, timeout_seconds: float, status: str) -> datetime | None:
    """When the step an order in ``status`` waits for must be answered; None once the order is final."""
    return now + timedelta(seconds=timeout_seconds) if status in WAITING_STATUSES else None


def is_overdue(status: str, deadline: datetime | None, now: datetime) -> bool:
    """Whether the sweeper must cancel this order (its step's deadline has passed)."""
    return status in WAITING_STATUSES and deadline is not None and deadline <= now


# Idempotency-Key (draft-ietf-httpapi-idempotency-key-header, and Stripe's practice)

# Visible ASCII (no space, no control characters), 1 to 255 of them.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class InvalidIdempotencyKey(ValueError):
    """A missing or malformed Idempotency-Key header (answered 400)."""


def check_idempotency_key(raw: str | None) -> str:
    if raw is None:
        raise InvalidIdempotencyKey("the Idempotency-Key header is required: a unique value per order you place")
    if not _KEY.match(raw):
        raise InvalidIdempotencyKey("the Idempotency-Key header must be 1 to 255 visible ASCII characters")
    return raw


def fingerprint(canonical_body: bytes) -> str:
    """What identifies a request's content: the same key with another fingerprint is another request."""
    return hashlib.sha256(canonical_body).hexdigest()


@dataclass(frozen=True)
class KeyRecord:
    fingerprint: str
    state: str  # "in_flight" or "done"
    claim_token: str
    locked_at: datetime
    created_at: datetime


class KeyDecision(enum.Enum):
    CLAIM = "claim"  # no record: claim the key for this request
    RECLAIM = "reclaim"  # an expired record, or a claim left by a crashed request: take it over
    REPLAY = "replay"  # the first request's answer, again
    MISMATCH = "mismatch"  # the key was used for another request body (422)
    IN_FLIGHT = "in flight"  # the first request is still running (409)


def decide(
    record: KeyRecord | None, request_fingerprint: str, now: datetime, *, lock_timeout: timedelta, ttl: timedelta
) -> KeyDecision:
    """What a request carrying a key does, given the key's record (None: never seen)."""
    if record is None:
        return KeyDecision.CLAIM
    if record.created_at + ttl <= now:
        return KeyDecision.RECLAIM  # forgotten: the key is new again
    if record.state != "done" and record.locked_at + lock_timeout <= now:
        # Left by a crashed request: nothing was done under the key (its answer would be stored in
        # the same transaction), so it is free, whatever the body, as after a released server error.
        return KeyDecision.RECLAIM
    if record.fingerprint != request_fingerprint:
        return KeyDecision.MISMATCH
    if record.state == "done":
        return KeyDecision.REPLAY
    return KeyDecision.IN_FLIGHT
