"""SQLite: each product's place in the SKU order as an integer, ``products.search_order``, which is
the rowid of its entry in the FTS5 index (revision 0004).

Why: FTS5 yields its matches in rowid order and seeks by rowid (``rowid > ?``), so with rowids in SKU
order a search page is the first matches after the cursor's key, read as a stream and stopped at the
page's end, however many products match and wherever they lie in the SKU order. (With the products'
own rowids, in creation order, a page cost a lookup and a sort key for every match.)

The keys keep the SKU order with gaps between them (order maintenance, "list labeling"): a new product
takes a key between its neighbours' keys; when they have none free, the products around it are given
evenly spread keys again, in a window grown until it has room (a few rows usually; amortized, the
rows moved per insert stay small because keys are 62 bits wide and spread 2^32 apart). Keys are written
only in a write transaction (SQLite has one writer at a time, so two creates never pick the same gap).
The FTS5 entries follow every key change here, in the same transaction; its triggers follow inserts,
deletes and changes of the words.

PostgreSQL leaves the column NULL: its GIN index has no order to exploit (see catalog.reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from catalog.search import FTS5_TABLE

# Keys lie strictly between 0 and SPACE. After a renumbering, and at either end of the order, keys are
# SPACING apart: room for 2^30 products, and for 31 products put one after another into one gap
# before the gap is full.
SPACE = 2**62
SPACING = 2**32
# A window is renumbered once its keys can lie at least this far apart, so that the next inserts
# into it find gaps again (about 20 halvings).
MIN_SPACING = 2**20
_FIRST_WINDOW = 8

_NEIGHBOURS_BEFORE = sa.text(
    "SELECT search_order FROM products WHERE sku < :sku ORDER BY sku DESC LIMIT :count"
).columns(search_order=sa.BigInteger)
_NEIGHBOURS_AFTER = sa.text("SELECT search_order FROM products WHERE sku > :sku ORDER BY sku LIMIT :count").columns(
    search_order=sa.BigInteger
)
_IN_WINDOW = "search_order > :low AND search_order < :high"
_WINDOW_SKUS = sa.text(f"SELECT sku FROM products WHERE {_IN_WINDOW} ORDER BY sku")
_UNINDEX_WINDOW = sa.text(
    f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document) "
    f"SELECT 'delete', search_order, search_document FROM products WHERE {_IN_WINDOW}"
)
# Negative keys while the window is rewritten: they collide with no key, old or new (the column is unique).
_PARK_WINDOW = sa.text(f"UPDATE products SET search_order = -search_order WHERE {_IN_WINDOW}")
_SET_KEY = sa.text("UPDATE products SET search_order = :key WHERE sku = :sku")
_INDEX_WINDOW = sa.text(
    f"INSERT INTO {FTS5_TABLE}(rowid, search_document) SELECT search_order, search_document FROM products "
    f"WHERE {_IN_WINDOW}"
)

RENUMBER_ALL = (
    f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}) VALUES ('delete-all')",
    "UPDATE products SET search_order = -rowid",
    f"UPDATE products SET search_order = ranked.position * {SPACING} FROM "
    "(SELECT rowid AS row, row_number() OVER (ORDER BY sku) AS position FROM products) AS ranked "
    "WHERE products.rowid = ranked.row",
    f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}) VALUES ('rebuild')",
)
"""The bulk path (SQLite): every product numbered afresh in SKU order, SPACING apart, and the FTS5 index
rebuilt from them. Run by revision 0004 on existing products, and by whoever loads products in bulk
(inserted with ``search_order`` NULL, which the triggers leave out of the index), in one transaction."""


def key_between(low: int, high: int) -> int | None:
    """A key strictly between ``low`` and ``high`` (0 and SPACE standing for "no neighbour"), or None."""
    if high - low < 2:
        return None
    if low == 0 and high - SPACING > 0 and high != SPACE:
        return high - SPACING  # before the first product: leave the gap as wide as a renumbering would
    if high == SPACE and low != 0 and low + SPACING < SPACE:
        return low + SPACING  # after the last
    return (low + high) // 2


async def order_key(session: Any, sku: str) -> int:
    """The ``search_order`` for a new product with this ``sku`` (SQLite, in its write transaction,
    before the product is inserted). May renumber products around it to make room (keeping their FTS5
    entries in step)."""
    before, after = await _neighbours(session, sku, 1)
    key = key_between(before[0] if before else 0, after[0] if after else SPACE)
    if key is not None:
        return key
    count = _FIRST_WINDOW
    while True:
        # The window: up to ``count`` products either side; its bounds, the keys just beyond it.
        before, after = await _neighbours(session, sku, count + 1)
        low = before[count] if len(before) > count else 0
        high = after[count] if len(after) > count else SPACE
        rows = min(len(before), count) + min(len(after), count) + 1
        if (high - low) // (rows + 1) >= MIN_SPACING or (low, high) == (0, SPACE):
            return await _renumber_window(session, sku, low, high)
        count *= 8


async def _neighbours(session: Any, sku: str, count: int) -> tuple[Sequence[int], Sequence[int]]:
    before = (await session.execute(_NEIGHBOURS_BEFORE, {"sku": sku, "count": count})).scalars().all()
    after = (await session.execute(_NEIGHBOURS_AFTER, {"sku": sku, "count": count})).scalars().all()
    return before, after


async def _renumber_window(session: Any, sku: str, low: int, high: int) -> int:
    """Spread the keys of the products between ``low`` and ``high``, and of the new ``sku``, evenly
    between them; the new product's key."""
    bounds = {"low": low, "high": high}
    skus = list((await session.execute(_WINDOW_SKUS, bounds)).scalars().all())
    place = sum(1 for other in skus if other < sku)
    skus.insert(place, sku)
    step = (high - low) // (len(skus) + 1)
    keys = [low + step * (i + 1) for i in range(len(skus))]
    await session.execute(_UNINDEX_WINDOW, bounds)
    await session.execute(_PARK_WINDOW, bounds)
    moved = [{"key": key, "sku": other} for key, other in zip(keys, skus, strict=True) if other != sku]
    if moved:
        await session.execute(_SET_KEY, moved)
    await session.execute(_INDEX_WINDOW, bounds)
    return keys[place]
