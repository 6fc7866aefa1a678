"""The orders rules without I/O: prices and totals, the saga's transitions, deadlines, Idempotency-Keys."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from flotilla_contracts.catalog import Money, Product
from flotilla_contracts.orders import OrderLineRequest
from orders import domain
from orders.domain import FollowUp, KeyDecision, KeyRecord, SagaEvent

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _product(sku: str, amount: int, currency: str = "EUR", active: bool = True) -> Product:
    return Product(
        id=uuid.uuid4(),
        sku=sku,
        name=sku,
        description="",
        price=Money(amount, currency),
        active=active,
        version=1,
        created_at=NOW,
        updated_at=NOW,
    )


def _catalog(*products: Product) -> dict[uuid.UUID, Product]:
    return {p.id: p for p in products}


# prices and totals


def test_lines_take_the_catalog_price_and_the_total_sums_them():
    tea, mug = _product("TEA", 450), _product("MUG", 1200)
    lines = domain.priced_lines(
        [OrderLineRequest(product_id=tea.id, quantity=3), OrderLineRequest(product_id=mug.id, quantity=1)],
        _catalog(tea, mug),
    )
    assert [(line.sku, line.quantity, line.unit_price) for line in lines] == [
        ("TEA", 3, Money(450, "EUR")),
        ("MUG", 1, Money(1200, "EUR")),
    ]
    assert domain.order_total(lines) == Money(3 * 450 + 1200, "EUR")


def test_an_unknown_product_is_refused_naming_it():
    missing = uuid.uuid4()
    with pytest.raises(domain.OrderRuleError, match=str(missing)):
        domain.priced_lines([OrderLineRequest(product_id=missing, quantity=1)], {})


def test_an_inactive_product_is_refused_naming_it():
    old = _product("OLD-TEA", 100, active=False)
    with pytest.raises(domain.OrderRuleError, match="OLD-TEA.*inactive"):
        domain.priced_lines([OrderLineRequest(product_id=old.id, quantity=1)], _catalog(old))


def test_an_order_is_priced_in_one_currency():
    eur, usd = _product("A", 1, "EUR"), _product("B", 1, "USD")
    with pytest.raises(domain.OrderRuleError, match="EUR, USD"):
        domain.priced_lines(
            [OrderLineRequest(product_id=eur.id, quantity=1), OrderLineRequest(product_id=usd.id, quantity=1)],
            _catalog(eur, usd),
        )


def test_a_product_in_two_lines_is_refused():
    tea = _product("TEA", 1)
    line = OrderLineRequest(product_id=tea.id, quantity=1)
    with pytest.raises(domain.OrderRuleError, match="two lines"):
        domain.priced_lines([line, line], _catalog(tea))


def test_a_total_above_the_largest_payable_amount_is_refused():
    gold = _product("GOLD", domain.MAX_TOTAL)
    lines = domain.priced_lines([OrderLineRequest(product_id=gold.id, quantity=2)], _catalog(gold))
    with pytest.raises(domain.OrderRuleError, match="above the largest"):
        domain.order_total(lines)


# the saga's transitions


@pytest.mark.parametrize(
    "event, status, to, follow_up",
    [
        (SagaEvent.STOCK_RESERVED, "awaiting_stock", "awaiting_payment", FollowUp.PAYMENT_REQUESTED),
        (SagaEvent.STOCK_REJECTED, "awaiting_stock", "cancelled", FollowUp.ORDER_CANCELLED),
        (SagaEvent.PAYMENT_CAPTURED, "awaiting_payment", "confirmed", FollowUp.ORDER_CONFIRMED),
        (SagaEvent.PAYMENT_DECLINED, "awaiting_payment", "cancelled", FollowUp.ORDER_CANCELLED),
        (SagaEvent.STEP_TIMED_OUT, "awaiting_stock", "cancelled", FollowUp.ORDER_CANCELLED),
        (SagaEvent.STEP_TIMED_OUT, "awaiting_payment", "cancelled", FollowUp.ORDER_CANCELLED),
    ],
)
def test_each_answer_moves_the_waiting_order_on_and_publishes_the_next_event(event, status, to, follow_up):
    transition = domain.transition_for(event, status)
    assert transition is not None
    assert (transition.to, transition.follow_up) == (to, follow_up)


@pytest.mark.parametrize(
    "event, status",
    [
        # duplicates: the order is past that step
        (SagaEvent.STOCK_RESERVED, "awaiting_payment"),
        (SagaEvent.STOCK_RESERVED, "confirmed"),
        (SagaEvent.PAYMENT_CAPTURED, "confirmed"),
        # out of order or contradicting what happened
        (SagaEvent.PAYMENT_CAPTURED, "awaiting_stock"),
        (SagaEvent.PAYMENT_DECLINED, "awaiting_stock"),
        (SagaEvent.PAYMENT_DECLINED, "confirmed"),
        (SagaEvent.STOCK_REJECTED, "awaiting_payment"),
        (SagaEvent.STOCK_REJECTED, "cancelled"),
        # answers that no longer matter once cancelled
        (SagaEvent.PAYMENT_DECLINED, "cancelled"),
        # a final order has no deadline
        (SagaEvent.STEP_TIMED_OUT, "confirmed"),
        (SagaEvent.STEP_TIMED_OUT, "cancelled"),
    ],
)
def test_duplicate_and_out_of_order_events_change_nothing(event, status):
    assert domain.transition_for(event, status) is None


@pytest.mark.parametrize(
    "event, fragment",
    [
        (SagaEvent.PAYMENT_CAPTURED, "payments refunds it on OrderCancelled"),
        (SagaEvent.STOCK_RESERVED, "inventory releases it on OrderCancelled"),
        (SagaEvent.PAYMENT_REFUNDED, ""),
    ],
)
def test_late_answers_after_cancellation_are_recorded_once_without_changing_the_status(event, fragment):
    transition = domain.transition_for(event, "cancelled")
    assert transition is not None
    assert transition.to is None and transition.follow_up is None and transition.once
    assert fragment in transition.detail("payment p-1")


def test_a_timeout_says_which_step_timed_out():
    assert domain.transition_for(SagaEvent.STEP_TIMED_OUT, "awaiting_stock").reason == "stock step timed out"
    assert domain.transition_for(SagaEvent.STEP_TIMED_OUT, "awaiting_payment").reason == "payment step timed out"
    # answers carry their own reason
    assert domain.transition_for(SagaEvent.PAYMENT_DECLINED, "awaiting_payment").reason is None


def test_a_step_detail_is_the_note_then_what_the_event_said():
    transition = domain.transition_for(SagaEvent.STOCK_REJECTED, "awaiting_stock")
    assert transition.detail("insufficient stock") == "stock rejected: insufficient stock"
    assert transition.detail("") == "stock rejected"


# deadlines (the clock is the caller's)


def test_a_waiting_order_gets_a_deadline_and_a_final_one_none():
    assert domain.step_deadline(NOW, 30, "awaiting_stock") == NOW + timedelta(seconds=30)
    assert domain.step_deadline(NOW, 2.5, "awaiting_payment") == NOW + timedelta(seconds=2.5)
    assert domain.step_deadline(NOW, 30, "confirmed") is None
    assert domain.step_deadline(NOW, 30, "cancelled") is None


def test_an_order_is_overdue_once_its_deadline_is_reached_and_only_while_waiting():
    deadline = NOW + timedelta(seconds=30)
    assert not domain.is_overdue("awaiting_stock", deadline, NOW)
    assert domain.is_overdue("awaiting_stock", deadline, deadline)
    assert domain.is_overdue("awaiting_payment", deadline, deadline + timedelta(seconds=1))
    assert not domain.is_overdue("cancelled", deadline, deadline + timedelta(seconds=1))
    assert not domain.is_overdue("awaiting_stock", None, NOW)


# Idempotency-Key

LOCK, TTL = timedelta(seconds=60), timedelta(hours=24)


def _record(state="done", fingerprint="f1", locked_at=NOW, created_at=NOW) -> KeyRecord:
    return KeyRecord(fingerprint=fingerprint, state=state, claim_token="t", locked_at=locked_at, created_at=created_at)


@pytest.mark.parametrize(
    "record, now, decision",
    [
        (None, NOW, KeyDecision.CLAIM),
        (_record("done"), NOW + timedelta(seconds=5), KeyDecision.REPLAY),
        (_record("done", fingerprint="other"), NOW, KeyDecision.MISMATCH),
        (_record("in_flight", fingerprint="other"), NOW, KeyDecision.MISMATCH),
        (_record("in_flight"), NOW + timedelta(seconds=59), KeyDecision.IN_FLIGHT),
        # a claim left by a crashed request is taken over after the lock timeout
        (_record("in_flight"), NOW + LOCK, KeyDecision.RECLAIM),
        # ... whatever its body: nothing was done under it, as after a server error (which releases it)
        (_record("in_flight", fingerprint="other"), NOW + LOCK, KeyDecision.RECLAIM),
        (_record("done", fingerprint="other"), NOW + LOCK, KeyDecision.MISMATCH),
        # a forgotten key is new again, whatever body it had
        (_record("done", fingerprint="other"), NOW + TTL, KeyDecision.RECLAIM),
    ],
)
def test_idempotency_decisions(record, now, decision):
    assert domain.decide(record, "f1", now, lock_timeout=LOCK, ttl=TTL) is decision


@pytest.mark.parametrize("key", ["a", "order-2026-01-01/42", "x" * 255, "~!#$%^&*()"])
def test_keys_of_1_to_255_visible_ascii_characters_are_accepted(key):
    assert domain.check_idempotency_key(key) == key


@pytest.mark.parametrize("key", [None, "", "x" * 256, "has space", "tab\t", "caf\u00e9", "\x7f"])
def test_missing_or_malformed_keys_are_refused(key):
    with pytest.raises(domain.InvalidIdempotencyKey):
        domain.check_idempotency_key(key)


def test_the_fingerprint_tells_bodies_apart():
    assert domain.fingerprint(b'{"a":1}') == domain.fingerprint(b'{"a":1}')
    assert domain.fingerprint(b'{"a":1}') != domain.fingerprint(b'{"a":2}')


def test_each_event_moves_an_order_only_from_the_statuses_it_answers():
    assert [s for s, _ in domain.moves_of(SagaEvent.STOCK_RESERVED)] == ["awaiting_stock"]
    assert [s for s, _ in domain.moves_of(SagaEvent.PAYMENT_CAPTURED)] == ["awaiting_payment"]
    assert [s for s, _ in domain.moves_of(SagaEvent.STEP_TIMED_OUT)] == ["awaiting_stock", "awaiting_payment"]
    assert domain.moves_of(SagaEvent.PAYMENT_REFUNDED) == []
