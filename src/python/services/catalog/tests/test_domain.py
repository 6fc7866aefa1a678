import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from catalog import domain
from flotilla_contracts.catalog import Money, Product, ProductPatch
from flotilla_contracts.events import ProductCreated, ProductDeactivated, ProductPriceChanged
from flotilla_kit.pagination import encode_cursor


def test_skus_are_matched_case_insensitively():
    assert domain.normalize_sku(" tea-green ") == "TEA-GREEN"


def test_names_are_tidied_and_must_not_be_blank():
    assert domain.clean_name("  Green   tea ") == "Green tea"
    with pytest.raises(domain.CatalogRuleError):
        domain.clean_name("   ")


def test_only_supported_currencies_are_accepted():
    assert domain.check_price(Money(100, "JPY")) == Money(100, "JPY")
    with pytest.raises(domain.CatalogRuleError, match="'XXX' is not supported"):
        domain.check_price(Money(100, "XXX"))


def test_a_patch_becomes_column_changes():
    patch = ProductPatch(name=" Black  tea", price=Money(500, "USD"))
    assert domain.changes_from_patch(patch) == {"name": "Black tea", "price_amount": 500, "currency": "USD"}


def test_an_empty_patch_is_refused():
    with pytest.raises(domain.CatalogRuleError, match="changes nothing"):
        domain.changes_from_patch(ProductPatch())


@pytest.mark.parametrize("sku", ["A", "TEA-GREEN-250G", "X.Y_Z", "9-LIVES"])
def test_cursors_round_trip(sku):
    assert domain.parse_sku_cursor(domain.sku_cursor(sku)) == sku


@pytest.mark.parametrize(
    "cursor", ["%%%", "\u00e9", "a", "AA", encode_cursor("no sku"), encode_cursor("\x00"), encode_cursor(7)]
)
def test_foreign_cursors_are_refused(cursor):
    with pytest.raises(domain.InvalidQuery):
        domain.parse_sku_cursor(cursor)


@pytest.mark.parametrize(
    "raw, valid", [("tea-1", True), ("TEA.1_A", True), ("tea\x00", False), ("", False), ("-a", False)]
)
def test_only_what_could_be_a_sku_is_looked_up(raw, valid):
    assert domain.is_sku(raw) is valid


def test_an_inverted_price_range_is_refused():
    domain.check_price_range(1, 1)
    with pytest.raises(domain.InvalidQuery):
        domain.check_price_range(5, 1)


def test_patch_type_rejects_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"prcie": {"amount": 1, "currency": "EUR"}}', type=ProductPatch)


_TEA = Product(
    id=uuid.UUID("0b5f1c4e-8d7e-4a59-9c43-2f0a6c1d7e11"),
    sku="TEA-1",
    name="Tea",
    description="",
    price=Money(450, "EUR"),
    active=True,
    version=1,
    created_at=datetime(2025, 1, 1, tzinfo=UTC),
    updated_at=datetime(2025, 1, 1, tzinfo=UTC),
)


def test_a_created_product_is_announced_with_its_data():
    assert domain.created_event(_TEA) == ProductCreated(
        product_id=_TEA.id, sku="TEA-1", name="Tea", price=Money(450, "EUR"), active=True, version=1
    )


def test_a_new_price_is_an_event_with_the_previous_one():
    after = msgspec.structs.replace(_TEA, price=Money(450, "USD"), version=2)
    assert domain.change_events(_TEA, after) == [
        ProductPriceChanged(
            product_id=_TEA.id, sku="TEA-1", price=Money(450, "USD"), previous_price=Money(450, "EUR"), version=2
        )
    ]


def test_a_deactivation_is_an_event_after_a_price_change_of_the_same_update():
    after = msgspec.structs.replace(_TEA, price=Money(1, "EUR"), active=False, version=2)
    assert [type(e) for e in domain.change_events(_TEA, after)] == [ProductPriceChanged, ProductDeactivated]


@pytest.mark.parametrize(
    "before, changes",
    [
        (_TEA, {"name": "Sencha", "description": "Steamed"}),  # no event of the contract for these
        (msgspec.structs.replace(_TEA, active=False), {"active": True}),  # reactivation
        (msgspec.structs.replace(_TEA, active=False), {"name": "Other"}),  # stays inactive
    ],
)
def test_other_changes_are_no_event(before, changes):
    assert domain.change_events(before, msgspec.structs.replace(before, **changes, version=2)) == []
