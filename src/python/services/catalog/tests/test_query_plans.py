"""The listing's statements use the indexes made for them, on SQLite and PostgreSQL: each plan is
asked of the database (EXPLAIN) and must name the index, and keep the SKU order without a sort
where the index gives it. Without the indexes of revision 0003 these tests fail.

PostgreSQL picks plans from statistics, and on a table this small a sequential scan always wins;
scans are switched off for the question (``enable_seqscan``; ``enable_indexscan`` where a bitmap
plan is what is asked about; bitmap scans and sorts where the question is whether an index gives
the SKU order), which leaves the planner the indexes that can serve, or a penalized plan when none
can, which the assertions then see."""

import re

import pytest
import sqlalchemy as sa

from catalog import reads
from catalog.reads import PageQuery, completions_statement, page_statement, sqlite_probe
from flotilla_kit.db import Database


@pytest.fixture
async def db(settings, client, create):
    """The migrated catalog's database, with a few products (the planners ask the tables' sizes)."""
    for i in range(20):
        create(f"P-{i:02d}", name=f"Green tea {i}", amount=100 * i, currency=("EUR", "USD")[i % 2])
    database = Database(settings.database_url)
    yield database
    await database.dispose()


async def _plan(
    db: Database, statement: sa.Select, *, no_index_scans: bool = False, ordered: bool = False, analyze: bool = False
) -> str:
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
        # ANALYZE runs it: the plan then says which parts were never executed.
        rows = (await connection.exec_driver_sql(f"EXPLAIN {'ANALYZE ' if analyze else ''}{sql}")).all()
        return "\n".join(row[0] for row in rows)


def _dialect(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def _assert_no_sort(plan: str) -> None:
    # A sort node ("Sort", "Incremental Sort"); a Merge Append's "Sort Key" merges ordered inputs.
    assert "TEMP B-TREE" not in plan and not re.search(r"(^|->)\s*(Incremental )?Sort\s+\(", plan, re.M), plan


def _first_try(plan: str) -> str:
    """PostgreSQL: the part of a search page's plan that tries the page before the GIN index (CTE
    "tried"): the rest sorts the matches through the index, and the at most 51 rows of the page."""
    return plan[plan.index("CTE tried") : plan.index("CTE matched")] if "CTE tried" in plan else plan


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
    _assert_no_sort(_first_try(plan))
    assert "ix_products_search" not in _first_try(plan), plan


async def test_sqlite_counts_matches_through_the_indexes_only(db):
    if not db.is_sqlite:
        pytest.skip("SQLite only: PostgreSQL walks first (see catalog.reads)")
    plan = await _plan(db, sqlite_probe(PageQuery(limit=50, words=("tea",), min_price=5, max_price=10)))
    assert "products_search VIRTUAL TABLE INDEX" in plan, plan
    assert "COVERING INDEX ix_products_price_sku" in plan, plan


def _postgresql_only(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL only: its words table (revision 0005)")


async def test_postgresql_finds_the_words_beginning_each_query_word_by_seeks_in_the_words_index(db):
    _postgresql_only(db)
    plan = await _plan(db, completions_statement(("green", "tea")), analyze=True)
    seeks = [line for line in plan.splitlines() if "product_words_pkey" in line]
    assert seeks and all("Index Only Scan" in line for line in seeks), plan
    assert "Index Cond: ((word IS NOT NULL) AND (word >= " in plan, plan
    # One seek per word found, and one more per query word to find there is no other: 2 words, 2 each.
    assert all(re.search(r"loops=[1-4]\)", line) for line in seeks), plan


def _leap(page: PageQuery) -> sa.TextClause:
    return page_statement("postgresql", page, drive="leap", leap=tuple((word,) for word in page.words or ()))


@pytest.mark.parametrize(
    "page",
    [
        PageQuery(limit=5, words=("green", "tea")),  # 20 products have both: the leaps fill the page
        PageQuery(limit=50, words=("green", "tea"), currency="EUR", after_sku="P-05"),  # they reach the end
    ],
)
async def test_postgresql_leaps_over_the_words_ranges_in_sku_order_and_never_reads_the_gin_index(db, page):
    _postgresql_only(db)
    plan = await _plan(db, _leap(page), analyze=True)
    tried = _first_try(plan)
    seeks = [line for line in plan.splitlines() if "product_words_pkey" in line]
    assert len(seeks) == 3 and all("Index Only Scan" in line for line in seeks), plan  # green, tea, green
    assert "Recursive Union" in plan and "Hash Join" not in tried, plan
    _assert_no_sort(tried)
    assert _through_index_ran(plan) is False, plan


async def test_postgresql_reads_through_the_gin_index_when_the_leaps_are_given_up(db, monkeypatch):
    _postgresql_only(db)
    monkeypatch.setattr(reads, "LEAP_LIMIT", 3)  # three steps: two hits, not the page of five
    plan = await _plan(db, _leap(PageQuery(limit=5, words=("green", "tea"))), analyze=True)
    assert _through_index_ran(plan) is True, plan
    assert "Bitmap Index Scan on ix_products_search" in plan, plan


def _through_index_ran(plan: str) -> bool:
    """Whether the page was read through the index after all (the CTE "matched" ran: EXPLAIN ANALYZE)."""
    found = re.search(r"CTE matched\n\s*->[^\n]*", plan)
    assert found, plan
    return "never executed" not in found.group(0)


@pytest.mark.parametrize("after_sku", [None, "P-05"])
async def test_postgresql_reads_a_search_page_from_the_words_ranges_in_sku_order_without_sorting_them(db, after_sku):
    _postgresql_only(db)
    page = PageQuery(limit=50, words=("green", "te"), currency="EUR", after_sku=after_sku)
    plan = await _plan(
        db, page_statement("postgresql", page, drive="words", completions=("green", "greens")), ordered=True
    )
    tried = _first_try(plan)
    ranges = [line for line in tried.splitlines() if "product_words_pkey" in line]
    assert len(ranges) == 2 and all("Index Only Scan" in line for line in ranges), plan
    assert "Merge Append" in tried, plan  # merged in order
    assert "Nested Loop" in tried and "Hash Join" not in tried, plan  # each candidate looked up, in order
    _assert_no_sort(tried)


async def test_postgresql_reads_through_the_gin_index_only_when_the_words_ranges_leave_the_page_short(db):
    _postgresql_only(db)
    full = PageQuery(limit=5, words=("tea",))  # all 20 products have "tea": the ranges fill the page
    plan = await _plan(db, page_statement("postgresql", full, drive="words", completions=("tea",)), analyze=True)
    gin = [line for line in plan.splitlines() if "Bitmap Index Scan on ix_products_search" in line]
    assert gin and all("never executed" in line for line in gin), plan
    short = PageQuery(limit=50, words=("tea",))  # 20 products: the page stays short
    plan = await _plan(db, page_statement("postgresql", short, drive="words", completions=("tea",)), analyze=True)
    gin = [line for line in plan.splitlines() if "Bitmap Index Scan on ix_products_search" in line]
    assert gin and not any("never executed" in line for line in gin), plan
