"""Catalog rules: pure functions, no I/O."""

from __future__ import annotations

import msgspec

from flotilla_contracts.catalog import Money, Product, ProductPatch, Sku
from flotilla_contracts.events import ProductCreated, ProductDeactivated, ProductPriceChanged
from flotilla_kit.pagination import InvalidCursor, decode_cursor, encode_cursor

# ISO 4217 codes the shop prices in, with their minor-unit exponent (JPY has none).
CURRENCY_EXPONENTS = {
    "AUD": 2, "CAD": 2, "CHF": 2, "CZK": 2, "DKK": 2, "EUR": 2, "GBP": 2, "HUF": 2,
    "JPY": 0, "NOK": 2, "NZD": 2, "PLN": 2, "SEK": 2, "USD": 2,
}  # fmt: skip


class CatalogRuleError(ValueError):
    """A request that is well formed but breaks a catalog rule (answered with 422)."""


class InvalidQuery(ValueError):
    """Query parameters that cannot be answered, such as a cursor we did not issue (400)."""


def normalize_sku(raw: str) -> str:
    """SKUs are matched case-insensitively; the catalog stores them upper-case."""
    return raw.strip().upper()


def clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise CatalogRuleError("name must contain more than whitespace")
    return name


def check_price(price: Money) -> Money:
    if price.currency not in CURRENCY_EXPONENTS:
        supported = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise CatalogRuleError(f"currency {price.currency!r} is not supported (supported: {supported})")
    return price


def changes_from_patch(patch: ProductPatch) -> dict[str, object]:
    """Column values a patch sets, checked; raises CatalogRuleError for an empty patch."""
    changes: dict[str, object] = {}
    if patch.name is not msgspec.UNSET:
        changes["name"] = clean_name(patch.name)
    if patch.description is not msgspec.UNSET:
        changes["description"] = patch.description
    if patch.price is not msgspec.UNSET:
        price = check_price(patch.price)
        changes["price_amount"] = price.amount
        changes["currency"] = price.currency
    if patch.active is not msgspec.UNSET:
        changes["active"] = patch.active
    if not changes:
        raise CatalogRuleError("the patch changes nothing: give at least one of name, description, price, active")
    return changes


def created_event(product: Product) -> ProductCreated:
    return ProductCreated(
        product_id=product.id,
        sku=product.sku,
        name=product.name,
        price=product.price,
        active=product.active,
        version=product.version,
    )


def change_events(before: Product, after: Product) -> list[ProductPriceChanged | ProductDeactivated]:
    """The events an update publishes, in this order: a new price (amount or currency), then a
    deactivation. Only what actually changed is an event; other changes (name, description,
    reactivation) publish nothing."""
    events: list[ProductPriceChanged | ProductDeactivated] = []
    if after.price != before.price:
        events.append(
            ProductPriceChanged(
                product_id=after.id,
                sku=after.sku,
                price=after.price,
                previous_price=before.price,
                version=after.version,
            )
        )
    if before.active and not after.active:
        events.append(ProductDeactivated(product_id=after.id, sku=after.sku, version=after.version))
    return events


def is_sku(raw: str) -> bool:
    """Whether ``raw`` can name a product at all (the contract's Sku, in any case): anything else
    is answered without a query, which could not hold it anyway (PostgreSQL text has no NUL)."""
    try:
        msgspec.convert(raw, Sku)
    except msgspec.ValidationError:
        return False
    return True


def sku_cursor(last_sku: str) -> str:
    """An opaque cursor for keyset pagination by SKU (stable while products are added)."""
    return encode_cursor(last_sku)


def parse_sku_cursor(cursor: str) -> str:
    """The SKU in a cursor of ``sku_cursor``; raises InvalidQuery for a cursor not issued here."""
    try:
        [sku] = decode_cursor(cursor, arity=1)
    except InvalidCursor:
        raise InvalidQuery(f"invalid cursor {cursor!r}") from None
    if not isinstance(sku, str) or not is_sku(sku):
        raise InvalidQuery(f"invalid cursor {cursor!r}")
    return sku


def check_price_range(min_price: int | None, max_price: int | None) -> None:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidQuery(f"min_price ({min_price}) is above max_price ({max_price})")
