"""Catalog rules: pure functions, no I/O."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

import msgspec

from flotilla_contracts.catalog import Money, Product, ProductPatch
from flotilla_contracts.events import ProductCreated, ProductDeactivated, ProductPriceChanged

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


def encode_cursor(last_sku: str) -> str:
    """An opaque cursor for keyset pagination by SKU (stable while products are added)."""
    return base64.urlsafe_b64encode(last_sku.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidQuery(f"invalid cursor {cursor!r}") from None


def check_price_range(min_price: int | None, max_price: int | None) -> None:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise InvalidQuery(f"min_price ({min_price}) is above max_price ({max_price})")


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time the catalog stores is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
