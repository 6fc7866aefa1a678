"""SQLite's search keys (catalog.search_order): every product's key follows the SKU order however
products arrive, the FTS5 index follows every renumbering, and search pages stay right."""

import random

import pytest
import sqlalchemy as sa

from catalog import search_order
from catalog.search_order import SPACE, SPACING, key_between
from flotilla_kit.db import Database


def test_a_key_goes_between_its_neighbours_and_leaves_room_at_the_ends():
    assert key_between(0, SPACE) == SPACE // 2  # the first product
    assert key_between(10 * SPACING, SPACE) == 11 * SPACING  # after the last
    assert key_between(0, 10 * SPACING) == 9 * SPACING  # before the first
    assert key_between(4, 8) == 6
    assert key_between(4, 5) is None  # no room: the products around it are renumbered


@pytest.fixture
def tight_keys(monkeypatch):
    """Keys 4 apart in a space of 2^16: gaps fill after two inserts, so renumberings are frequent."""
    monkeypatch.setattr(search_order, "SPACE", 2**16)
    monkeypatch.setattr(search_order, "SPACING", 4)
    monkeypatch.setattr(search_order, "MIN_SPACING", 4)


@pytest.mark.parametrize("arrival", ["ascending", "descending", "shuffled", "into one gap"])
async def test_keys_follow_the_sku_order_and_the_index_follows_the_keys(settings, client, create, tight_keys, arrival):
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite only: PostgreSQL leaves search_order NULL")
    skus = [f"P-{i:03d}" for i in range(60)]
    if arrival == "descending":
        skus.reverse()
    elif arrival == "shuffled":
        random.Random(17).shuffle(skus)
    elif arrival == "into one gap":  # between A and Z, each one after the previous, then each before it
        create("A-0", name="Kettle")
        create("Z-0", name="Kettle")
        skus = skus[:30] + list(reversed(skus[30:]))
    for i, sku in enumerate(skus):
        create(sku, name="Green tea" if i % 2 else "Black tea")

    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:  # the check is an INSERT: a write transaction
            rows = (await session.execute(sa.text("SELECT sku, search_order FROM products ORDER BY sku"))).all()
            # FTS5's own check that the index holds exactly the content table's words under its keys.
            await session.execute(sa.text("INSERT INTO products_search(products_search) VALUES ('integrity-check')"))
    finally:
        await db.dispose()
    keys = [key for _, key in rows]
    assert None not in keys and keys == sorted(set(keys)), rows

    def search(q, **params):
        found, cursor = [], None
        while True:
            query = {"q": q, "limit": 7, **params, **({"cursor": cursor} if cursor else {})}
            page = client.get("/products", params=query).json()
            found += [p["sku"] for p in page["items"]]
            if (cursor := page["next_cursor"]) is None:
                return found

    assert search("tea") == sorted(skus)
    green = sorted(sku for i, sku in enumerate(skus) if i % 2)
    assert search("green te") == green
    assert search("kettle") == (["A-0", "Z-0"] if arrival == "into one gap" else [])
