"""The listing's statements use the indexes made for them, on SQLite and PostgreSQL: each plan is
asked of the database (EXPLAIN) and must name the index, and keep the SKU order without a sort
where the index gives it. Without the indexes of revision 0003 these tests fail.

PostgreSQL picks plans from statistics, and on a table this small a sequential scan always wins;
scans are switched off for the question (``enable_seqscan``; ``enable_indexscan`` where a bitmap
plan is what is asked about; bitmap scans and sorts where the question is whether an index gives
the SKU order), which leaves the planner the indexes that can serve, or a penalized plan when none
can, which the assertions then see."""

import pytest
import sqlalchemy as sa

from catalog.reads import PageQuery, page_statement, sqlite_probe
from flotilla_kit.db import Database


@pytest.fixture
async def db(settings, client, create):
    """The migrated catalog's database, with a few products (the planners ask the tables' sizes)."""
    for i in range(20):
        create(f"P-{i:02d}", name=f"Green tea {i}", amount=100 * i, currency=("EUR", "USD")[i % 2])
    database = Database(settings.database_url)
    yield database
    await database.dispose()


async def _plan(db: Database, statement: sa.Select, *, no_index_scans: bool = False, ordered: bool = False) -> str:
    sql = str(statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    async with db.reader() as session:
        connection = await session.connection()
        if db.is_sqlite:
            rows = (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
            return "\n".join(tuple(row)[3] for row in rows)
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        if no_index_scans:
            await connection.exec_driver_sql("SET LOCAL enable_indexscan = off")
        if ordered:  # is there a plan that reads in SKU order (a sort is then only a last resort)?
            await connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
            await connection.exec_driver_sql("SET LOCAL enable_sort = off")
        rows = (await connection.exec_driver_sql(f"EXPLAIN {sql}")).all()
        return "\n".join(row[0] for row in rows)


def _dialect(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def _assert_no_sort(plan: str) -> None:
    assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan


@pytest.mark.parametrize(
    "page, index",
    [
        (PageQuery(limit=50, active=False), "ix_products_active_sku"),
        (PageQuery(limit=50, active=True, after_sku="P-05"), "ix_products_active_sku"),
        (PageQuery(limit=50, currency="USD"), "ix_products_currency_sku"),
        (PageQuery(limit=50, currency="USD", after_sku="P-05"), "ix_products_currency_sku"),
    ],
)
async def test_equality_filters_read_one_range_of_their_index_in_sku_order(db, page, index):
    plan = await _plan(db, page_statement(_dialect(db), page), ordered=True)
    assert index in plan, plan
    _assert_no_sort(plan)


async def test_a_page_after_a_cursor_seeks_the_sku_index(db):
    plan = await _plan(db, page_statement(_dialect(db), PageQuery(limit=50, after_sku="P-05")), ordered=True)
    assert ("(sku>?)" if db.is_sqlite else "Index Cond: ((sku)::text > 'P-05'") in plan, plan
    _assert_no_sort(plan)


async def test_a_price_range_can_be_read_through_the_price_index(db):
    page = PageQuery(limit=50, min_price=300, max_price=900)
    plan = await _plan(db, page_statement(_dialect(db), page, drive="price"), no_index_scans=True)
    assert "ix_products_price_sku" in plan, plan


async def test_a_text_search_can_be_read_through_the_text_index(db):
    page = PageQuery(limit=50, words=("green", "te"))
    plan = await _plan(db, page_statement(_dialect(db), page, drive="text"), no_index_scans=True)
    assert (
        "products_search VIRTUAL TABLE INDEX" if db.is_sqlite else "Bitmap Index Scan on ix_products_search"
    ) in plan
    if db.is_sqlite:  # the matches drive, each looked up by its key
        assert "SEARCH products USING INDEX ix_products_search_order (search_order=?)" in plan, plan


@pytest.mark.parametrize("after_sku", [None, "P-05"])
async def test_sqlite_reads_a_search_page_from_the_text_index_in_sku_order_without_sorting(db, after_sku):
    if not db.is_sqlite:
        pytest.skip("SQLite only: FTS5 rowids are keys in SKU order (catalog.search_order)")
    page = PageQuery(limit=50, words=("green", "te"), currency="EUR", after_sku=after_sku)
    plan = await _plan(db, page_statement("sqlite", page, drive="text"))
    assert plan.startswith("SCAN products_search VIRTUAL TABLE INDEX"), plan
    _assert_no_sort(plan)


async def test_a_walk_reads_the_sku_order_through_the_equality_filters_index(db):
    page = PageQuery(limit=50, words=("green",), min_price=1, currency="USD")
    plan = await _plan(db, page_statement(_dialect(db), page, drive="sku"), ordered=True)
    assert "ix_products_currency_sku" in plan, plan
    assert "ix_products_price_sku" not in plan and "VIRTUAL TABLE" not in plan, plan
    assert "ix_products_search" not in plan, plan
    _assert_no_sort(plan)


async def test_sqlite_counts_matches_through_the_indexes_only(db):
    if not db.is_sqlite:
        pytest.skip("SQLite only: PostgreSQL walks first (see catalog.reads)")
    plan = await _plan(db, sqlite_probe(PageQuery(limit=50, words=("tea",), min_price=5, max_price=10)))
    assert "products_search VIRTUAL TABLE INDEX" in plan, plan
    assert "COVERING INDEX ix_products_price_sku" in plan, plan
