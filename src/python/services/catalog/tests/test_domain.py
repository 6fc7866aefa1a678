import msgspec
import pytest

from catalog import domain
from flotilla_contracts.catalog import Money, ProductPatch


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


@pytest.mark.parametrize("sku", ["A", "TEA-GREEN-250G", "X.Y_Z", "ÜBER"])
def test_cursors_round_trip(sku):
    assert domain.decode_cursor(domain.encode_cursor(sku)) == sku


@pytest.mark.parametrize("cursor", ["%%%", "\u00e9", "a"])
def test_foreign_cursors_are_refused(cursor):
    with pytest.raises(domain.InvalidQuery):
        domain.decode_cursor(cursor)


def test_an_inverted_price_range_is_refused():
    domain.check_price_range(1, 1)
    with pytest.raises(domain.InvalidQuery):
        domain.check_price_range(5, 1)


def test_patch_type_rejects_unknown_fields():
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"prcie": {"amount": 1, "currency": "EUR"}}', type=ProductPatch)
