"""The inventory's rules, without a database."""

import uuid

import pytest

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import Shortage
from flotilla_contracts.orders import OrderLine
from inventory import domain
from inventory.domain import Action

A, B, C = sorted(uuid.uuid4() for _ in range(3))


def _line(product: uuid.UUID, quantity: int) -> OrderLine:
    return OrderLine(product_id=product, sku="S", quantity=quantity, unit_price=Money(1, "EUR"))


def test_lines_of_one_product_are_summed_and_products_come_in_ascending_order():
    assert domain.sum_lines([_line(C, 1), _line(A, 2), _line(C, 3), _line(B, 1)]) == {A: 2, B: 1, C: 4}
    assert list(domain.sum_lines([_line(C, 1), _line(A, 2), _line(B, 1)])) == [A, B, C]


def test_an_order_without_lines_wants_nothing():
    assert domain.sum_lines([]) == {}


def test_a_line_without_units_is_a_bug_of_the_sender():
    with pytest.raises(ValueError, match="quantity 0"):
        domain.sum_lines([_line(A, 0)])


def test_shortages_name_every_product_with_too_few_units_and_unknown_products_have_none():
    wanted = {A: 2, B: 5, C: 1}
    assert domain.shortages(wanted, {A: 2, B: 4}) == [
        Shortage(product_id=B, requested=5, available=4),
        Shortage(product_id=C, requested=1, available=0),
    ]


def test_no_shortage_when_exactly_enough_is_available():
    assert domain.shortages({A: 3}, {A: 3}) == []


def test_setting_on_hand_gives_the_move():
    assert domain.check_set(on_hand=5, reserved=2, new_on_hand=9) == domain.StockChange(on_hand_after=9, delta=4)
    assert domain.check_set(on_hand=5, reserved=2, new_on_hand=2) == domain.StockChange(on_hand_after=2, delta=-3)


def test_setting_on_hand_below_what_is_reserved_is_refused():
    with pytest.raises(domain.StockRuleError, match="3 units are reserved"):
        domain.check_set(on_hand=5, reserved=3, new_on_hand=2)


def test_setting_on_hand_above_the_limit_is_refused():
    with pytest.raises(domain.StockRuleError, match="exceed"):
        domain.check_set(on_hand=0, reserved=0, new_on_hand=domain.MAX_ON_HAND + 1)


def test_adjustments_add_and_remove_units():
    assert domain.check_adjustment(on_hand=5, reserved=0, delta=3) == domain.StockChange(on_hand_after=8, delta=3)
    assert domain.check_adjustment(on_hand=5, reserved=2, delta=-3) == domain.StockChange(on_hand_after=2, delta=-3)


@pytest.mark.parametrize(
    "on_hand, reserved, delta, fragment",
    [
        (5, 0, -6, "only 5 are on hand"),
        (5, 3, -3, "below the 3 reserved"),
        (domain.MAX_ON_HAND, 0, 1, "above the limit"),
    ],
)
def test_adjustments_never_go_below_zero_below_what_is_reserved_or_above_the_limit(on_hand, reserved, delta, fragment):
    with pytest.raises(domain.StockRuleError, match=fragment):
        domain.check_adjustment(on_hand=on_hand, reserved=reserved, delta=delta)


def test_an_adjustment_of_nothing_is_invalid_whatever_the_stock():
    with pytest.raises(domain.InvalidChange):
        domain.check_adjustment(on_hand=5, reserved=0, delta=0)


@pytest.mark.parametrize(
    "status, action",
    [
        (None, Action.TOMBSTONE),
        ("reserved", Action.RELEASE),
        ("released", Action.NOTHING),
        ("rejected", Action.NOTHING),
        ("committed", Action.NOTHING),
    ],
)
def test_a_cancellation_releases_a_reservation_or_forestalls_one(status, action):
    assert domain.on_order_cancelled(status) is action


@pytest.mark.parametrize(
    "status, action",
    [
        (None, Action.NOTHING),
        ("reserved", Action.COMMIT),
        ("released", Action.NOTHING),
        ("rejected", Action.NOTHING),
        ("committed", Action.NOTHING),
    ],
)
def test_a_confirmation_commits_only_a_held_reservation(status, action):
    assert domain.on_order_confirmed(status) is action


def test_the_release_reason_says_why_and_fits_its_column():
    assert domain.released_reason("payment declined") == "order cancelled: payment declined"
    assert domain.released_reason("") == "order cancelled"
    assert len(domain.released_reason("x" * 1000)) == domain.REASON_LIMIT
