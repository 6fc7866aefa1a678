"""The catalog's reads: products by id or SKU, and pages of the listing, with as few statements and
as little Python per row as they need.

A page is ordered by SKU and resumed after the cursor's SKU (keyset pagination), filtered by
activity, currency, price range and text (catalog.search). Each filter has an index that keeps the
page a seek (models.Product, revision 0003). What a page costs, and why it is built like this, is
in the bench README's catalog section.

Text and price filters can be served two ways: walk the SKU order and test each product (cheap when
many products match, as the page fills early), or collect the matches through their index and sort
them (cheap when few match). Neither is cheap when many match but lie far down the SKU order (a
search for "tea" where the teas' SKUs start with TEA-): the walk passes everything before them, so
a walk is given up after ``WALK_LIMIT`` products, and the page is then read through the index
(costing the sort of every match: see the bench README).

So the catalog chooses the plan:

- SQLite, text: FTS5 rowids are the products' keys in SKU order (catalog.search_order), so the page
  is the index's matches after the cursor's key, read as a stream and stopped at the page's end: one
  statement, as cheap for many matches far down the SKU order as for none. With a price range too,
  one probe statement counts the matches of both through their indexes, up to ``PROBE_LIMIT``, and
  a price range that holds fewer products than the text matches drives instead.
- SQLite, price only (no statistics for a range): the probe; below ``PROBE_LIMIT`` the page is read
  through the price index, above it by a walk, and through the index after all if the walk does not
  fill the page.
- PostgreSQL, text (its planner chooses well for a price range, from histograms, but for text it
  assumes evenly spread matches, and underestimates short prefixes tenfold): unless every query
  word is shorter than ``MIN_DRIVING_LENGTH`` (then the walk below, at once), one statement finds
  the words that begin each query word of that length in the words table (revision 0005), up to
  ``MAX_COMPLETIONS`` + 1 per query word, a seek each. A query word without any: nothing matches,
  and that was the page's only statement. One query word with a few: the page reads those words'
  ranges of the words table's key, (word, SKU), in SKU order, merged, after the cursor, checks each
  product (its words, the filters) and stops at the page's end, after at most ``WALK_LIMIT``
  products. Several query words, two or more of them with a few: the page leaps over their ranges
  (a leapfrog join: a seek per word and completion finds the next product having them all, see
  _leap_page), at most ``LEAP_LIMIT`` steps. Otherwise (a prefix of a letter or two, which most
  products have): a walk of the SKU order. Either way, if the page is not full (and, for the leaps,
  they did not reach the last match), the same statement reads it through the GIN index instead
  (the first try's rows are counted in a one-time filter, so the GIN branch runs only then): two
  statements per search page. The GIN index alone costs every match (a table read and a sort key
  each: ~25 ms for 10k matches at 100k products); counting through it visits the table too.

Every statement is built and compiled once per *shape* (which filters a request has, how many
words, which plan) and kept as SQL text with named parameters: building a SQLAlchemy statement and
its cache key costs 40-300 us per request, more than SQLite takes to run most of them.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import psycopg2
from sqlalchemy.sql.compiler import SQLCompiler

from catalog import search
from catalog.models import Product as ProductRow
from flotilla_contracts.catalog import Money, Product
from flotilla_kit.db import Database
from flotilla_kit.pagination import as_utc

# Matches counted per filter before the catalog stops counting and walks the SKU order instead; and
# products walked before it gives the walk up. Sorting this many matches or walking this many rows
# costs a few milliseconds on SQLite: the most a page with a text or price filter spends beyond a
# plain page, unless the matches are many *and* far down the SKU order (then the page costs the
# sort of all of them; see the bench README).
PROBE_LIMIT = 500
WALK_LIMIT = 1000
# PostgreSQL: a search reads the products having one of the words that begin its longest query word,
# merged in SKU order, when there are at most this many such words; more (a beginning of one or two
# letters) are common enough for a walk of the SKU order to fill a page early.
MAX_COMPLETIONS = 16
# PostgreSQL: a search of several words, of which at least two have at most MAX_COMPLETIONS
# completions, intersects those words' ranges of the words table by leaps (at most MAX_LEAP_WORDS
# words, at most LEAP_LIMIT steps of a seek per completion each; see _leap_page).
MAX_LEAP_WORDS = 4
LEAP_LIMIT = 500
# Query words this short are not looked up there at all (they begin too many words): the walk goes
# first, and a page costs one statement (measured in-process at 100k products: "ka" 2.4-3.5 ms
# with the lookup, 1.0-1.5 ms without).
MIN_DRIVING_LENGTH = 3

_products = ProductRow.__table__
_c = _products.c
_COLUMNS = (
    _c.id, _c.sku, _c.name, _c.description, _c.price_amount, _c.currency, _c.active, _c.version, _c.created_at,
    _c.updated_at,
)  # fmt: skip
# On SQLite, ids (32 hex digits) and times (text) are read as text and converted by to_product with
# the C constructors (uuid.UUID(hex=), datetime.fromisoformat): SQLAlchemy's own conversion of them
# was most of what a page of 50 cost in Python (~12 us of ~30 us per row). Statements here are
# executed as compiled text anyway, whose results SQLAlchemy does not convert.
_SELECT = sa.select(*_COLUMNS)
_VECTOR = sa.literal_column(f"products.{search.TSVECTOR_COLUMN}", postgresql.TSVECTOR)  # PostgreSQL only
# Compiled with named parameters, for text(); psycopg2's compiler, as asyncpg's casts every parameter
# (":x::VARCHAR"), where PostgreSQL infers the types anyway.
_DIALECTS = {"sqlite": sqlite.dialect(paramstyle="named"), "postgresql": psycopg2.dialect(paramstyle="named")}
_FTS5 = sa.table(search.FTS5_TABLE, sa.column("rowid"))
_PRICE_INDEX = "ix_products_price_sku"
_WORDS = sa.table(search.WORDS_TABLE, sa.column("word", sa.Text), sa.column("sku", sa.String))
# Above every SKU (SKUs are upper-case letters, digits, '.', '_' and '-'): the end of the walk when
# fewer than WALK_LIMIT products are left.
_AFTER_EVERY_SKU = "~"


def _prepared(statement: sa.ClauseElement, dialect: str) -> sa.TextClause:
    """``statement`` compiled for ``dialect``, as text with its named (and typed) parameters."""
    compiled = statement.compile(dialect=_DIALECTS[dialect])
    assert isinstance(compiled, SQLCompiler)
    binds = [sa.bindparam(name, bind.value, type_=bind.type) for bind, name in compiled.bind_names.items()]
    # A cast that is left (":id::UUID") must reach text() escaped, or it hides the parameter's name.
    return sa.text(str(compiled).replace("::", r"\:\:")).bindparams(*binds)


def _dialect(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def to_product(row: Sequence[Any]) -> Product:
    """A row of the product columns (as read here) as the contract's Product."""
    product_id, sku, name, description, amount, currency, active, version, created_at, updated_at = row
    return Product(
        id=product_id if isinstance(product_id, uuid.UUID) else uuid.UUID(hex=product_id),
        sku=sku,
        name=name,
        description=description,
        price=Money(amount, currency),
        active=bool(active),
        version=version,
        created_at=_utc(created_at),
        updated_at=_utc(updated_at),
    )


def to_products(rows: Sequence[Sequence[Any]]) -> list[Product]:
    """Rows of the product columns as Products, as ``to_product`` does one by one, faster for a page:
    on SQLite the ids (32 hex digits each) are parsed by msgspec in one call (in C, ~0.2 us each,
    where ``uuid.UUID(hex=)`` is Python code, ~1.3 us: half of what building a page's Products cost)."""
    if not rows:
        return []
    ids = [row[0] for row in rows]
    if isinstance(ids[0], str):
        ids = msgspec.convert(ids, list[uuid.UUID])
    return [
        Product(
            id=product_id,
            sku=sku,
            name=name,
            description=description,
            price=Money(amount, currency),
            active=bool(active),
            version=version,
            created_at=_utc(created_at),
            updated_at=_utc(updated_at),
        )
        for product_id, (_, sku, name, description, amount, currency, active, version, created_at, updated_at) in zip(
            ids, rows, strict=True
        )
    ]


def _utc(moment: datetime | str) -> datetime:
    if isinstance(moment, str):  # SQLite's text of a UTC time, "2026-11-29 08:10:23.031709"
        return datetime.fromisoformat(moment + "+00:00")
    return as_utc(moment)


@functools.cache
def _by_key(dialect: str, key: str) -> sa.TextClause:
    return _prepared(_SELECT.where(_c[key] == sa.bindparam("key", type_=_c[key].type)), dialect)


async def read_product_by_id(db: Database, product_id: uuid.UUID) -> Product | None:
    """The product with this id, in one statement."""
    row = await db.fetch_one(_by_key(_dialect(db), "id").bindparams(key=product_id))
    return to_product(row) if row is not None else None


async def read_product_by_sku(db: Database, sku: str) -> Product | None:
    """The product with this (normalized) SKU, in one statement."""
    row = await db.fetch_one(_by_key(_dialect(db), "sku").bindparams(key=sku))
    return to_product(row) if row is not None else None


def select_product(product_id: uuid.UUID) -> sa.Select[Any]:
    """The product with this id, for a session (``with_for_update`` in a change); its row is for to_product."""
    return _SELECT.where(_c.id == product_id)


@dataclass(frozen=True, kw_only=True)
class PageQuery:
    """What a page of the listing asks for (checked by the API)."""

    limit: int
    after_sku: str | None = None
    words: tuple[str, ...] | None = None  # None: no text filter; (): a query without words (matches nothing)
    active: bool | None = None
    currency: str | None = None
    min_price: int | None = None
    max_price: int | None = None

    @property
    def has_price(self) -> bool:
        return self.min_price is not None or self.max_price is not None


@dataclass(frozen=True)
class _Shape:
    """What the statement of a page depends on (its parameters carry the rest)."""

    dialect: str
    after: bool
    active: bool
    currency: bool
    min_price: bool
    max_price: bool
    word_count: int
    drive: str | None
    fts5_exact: bool  # no query word is cut for FTS5: its matches are the answer, without a recheck
    completions: int = 0  # PostgreSQL, drive "words": how many words the page's ranges are of
    leap: tuple[int, ...] = ()  # PostgreSQL, drive "leap": how many completions each leaping word has


async def read_page(db: Database, page: PageQuery) -> list[Product]:
    """Up to ``page.limit + 1`` products in SKU order after ``page.after_sku`` (the one beyond the
    limit says there is a next page)."""
    if page.words == ():
        return []
    dialect = _dialect(db)
    if dialect == "sqlite" and (page.words or page.has_price):
        rows = await _sqlite_planned_rows(db, page)
    elif dialect == "postgresql" and page.words:
        rows = await _postgresql_search_rows(db, page)
    else:
        rows = await db.fetch_all(page_statement(dialect, page))
    return to_products(rows)


async def _postgresql_search_rows(db: Database, page: PageQuery) -> Sequence[Any]:
    assert page.words
    looked_up = tuple(word for word in page.words if len(word) >= MIN_DRIVING_LENGTH)
    if not looked_up:  # "k", "ka": most products have them, a walk fills the page early
        return await db.fetch_all(page_statement("postgresql", page, drive="sku"))
    found: dict[int, list[str]] = {}
    rows = await db.fetch_all(completions_statement(looked_up))
    for index, word in (tuple(row) for row in rows):  # (which query word, one of its completions)
        found.setdefault(index, []).append(word)
    if len(found) < len(looked_up):
        return []  # no product has a word that begins with one of the query words: nothing matches
    # Words with few completions, the fewest first (each completion is a seek per step of a leap).
    few = sorted((words for words in found.values() if len(words) <= MAX_COMPLETIONS), key=len)
    if len(page.words) == 1 and few:
        return await db.fetch_all(page_statement("postgresql", page, drive="words", completions=tuple(few[0])))
    if len(few) >= 2:
        leap = tuple(tuple(words) for words in few[:MAX_LEAP_WORDS])
        return await db.fetch_all(page_statement("postgresql", page, drive="leap", leap=leap))
    # A short, common beginning: a walk fills the page early. One word of several with few
    # completions: the products having it are no likelier to have the others than any product, and a
    # candidate of the words table costs a lookup by SKU (~5 us) where a walk passes a product for
    # ~1-2 us.
    return await db.fetch_all(page_statement("postgresql", page, drive="sku"))


def completions_statement(words: tuple[str, ...]) -> sa.TextClause:
    """PostgreSQL: for each of ``words`` (its index, from 1), the distinct words of products that begin
    with it, at most MAX_COMPLETIONS + 1, in order: one seek each in the words table's key (a "loose
    index scan"), however many products have them. A word with none is missing from the rows."""
    values = {f"prefix_{i}": word for i, word in enumerate(words)}
    return _completions_sql(len(words)).bindparams(**values, count=MAX_COMPLETIONS + 1)


@functools.cache
def _completions_sql(word_count: int) -> sa.TextClause:
    # The prefixes as parameters of their own, not one array: PostgreSQL plans a statement with an
    # array parameter anew each time (~0.3-0.8 ms, 5x the run), as the array's length changes the
    # estimates; this one is planned once per connection.
    prefixes = " UNION ALL ".join(f"SELECT {i + 1}, CAST(:prefix_{i} AS TEXT)" for i in range(word_count))
    # Words hold letters and digits only: every word that begins with a prefix sorts (COLLATE "C", by
    # code point) before the prefix followed by the last code point, chr(1114111).
    return sa.text(
        f"""SELECT prefixes.i, found.word
        FROM ({prefixes}) AS prefixes(i, prefix)
        CROSS JOIN LATERAL (
            WITH RECURSIVE found(word, n) AS (
                SELECT (SELECT min(word) FROM {search.WORDS_TABLE}
                        WHERE word >= prefixes.prefix AND word < prefixes.prefix || chr(1114111)), 1
                UNION ALL
                SELECT (SELECT min(word) FROM {search.WORDS_TABLE}
                        WHERE word > found.word AND word < prefixes.prefix || chr(1114111)), found.n + 1
                FROM found WHERE found.word IS NOT NULL AND found.n < :count
            ) SELECT word, n FROM found WHERE word IS NOT NULL
        ) AS found
        ORDER BY prefixes.i, found.n"""
    ).bindparams(
        *(sa.bindparam(f"prefix_{i}", type_=sa.Text) for i in range(word_count)),
        sa.bindparam("count", type_=sa.Integer),
    )


def page_statement(
    dialect: str,
    page: PageQuery,
    *,
    drive: str | None = None,
    completions: tuple[str, ...] = (),
    leap: tuple[tuple[str, ...], ...] = (),
) -> sa.TextClause:
    """The statement of one page, with its parameters bound. ``drive`` names the index that must
    serve it: "text", "price" (SQLite only), "sku" for a walk of at most WALK_LIMIT products in SKU
    order, "words" (PostgreSQL) for the products having one of ``completions`` in SKU order (at most
    WALK_LIMIT), "leap" (PostgreSQL) for the products having a word of each tuple of ``leap`` (see
    _leap_page); on PostgreSQL "sku", "words" and "leap" fall back to "text" in the same statement when
    they do not fill the page (and, for "leap", did not reach its last match). None leaves the choice to the database's planner.
    """
    shape = _Shape(
        dialect=dialect,
        after=page.after_sku is not None,
        active=page.active is not None,
        currency=page.currency is not None,
        min_price=page.min_price is not None,
        max_price=page.max_price is not None,
        word_count=len(page.words or ()),
        drive=None if dialect == "postgresql" and drive == "price" else drive,
        fts5_exact=all(len(word) <= search.FTS5_PREFIX_LENGTH for word in page.words or ()),
        completions=len(completions),
        leap=tuple(len(words) for words in leap),
    )
    values: dict[str, Any] = {"limit": page.limit + 1}
    for name in ("after_sku", "active", "currency", "min_price", "max_price"):
        if getattr(page, name) is not None:
            values[name] = getattr(page, name)
    if page.words:
        if not (dialect == "sqlite" and shape.drive == "text" and shape.fts5_exact):
            values.update(search.match_parameters(page.words, dialect))
        if shape.drive == "text" and dialect == "sqlite":
            values["fts"] = search.fts5_query(page.words)
    for i, word in enumerate(completions):
        values[f"completion_{i}"] = word
    for i, words in enumerate(leap):
        for j, word in enumerate(words):
            values[f"leap_{i}_{j}"] = word
    if shape.drive == "leap":
        values.update(leap_from=page.after_sku or "", leap_after=page.after_sku is not None, leap_limit=LEAP_LIMIT)
    if shape.drive in ("sku", "words"):
        values["walk_limit"] = WALK_LIMIT
        if dialect == "sqlite" and shape.drive == "sku":
            values["walk_from"] = page.after_sku or ""
    return _page_sql(shape).bindparams(**values)


@functools.cache
def _page_sql(shape: _Shape) -> sa.TextClause:
    if shape.dialect == "postgresql":
        return _prepared(_postgresql_page(shape), "postgresql")
    return _prepared(_sqlite_page(shape), "sqlite")


def _param(name: str, column: Any) -> Any:
    return sa.bindparam(name, type_=column.type)


def _postgresql_page(shape: _Shape) -> sa.Select[Any]:
    limit = sa.bindparam("limit", type_=sa.Integer)
    equal = [_c.sku > _param("after_sku", _c.sku)] if shape.after else []
    if shape.active:
        equal.append(_c.active == _param("active", _c.active))
    if shape.currency:
        equal.append(_c.currency == _param("currency", _c.currency))

    def rest(columns: Any, vector: Any) -> list[Any]:
        conditions = []
        if shape.min_price:
            conditions.append(columns.price_amount >= _param("min_price", _c.price_amount))
        if shape.max_price:
            conditions.append(columns.price_amount <= _param("max_price", _c.price_amount))
        if shape.word_count:
            conditions.append(search.matches(shape.word_count, "postgresql", document=None, vector=vector))
        return conditions

    def through_index() -> sa.Select[Any]:
        # Every match through the GIN index (MATERIALIZED: the planner may not turn it into a walk).
        matched = _SELECT.where(*equal, *rest(_c, _VECTOR)).cte("matched").prefix_with("MATERIALIZED")
        return sa.select(*matched.c).order_by(matched.c.sku).limit(limit)

    if shape.drive == "sku":
        # At most WALK_LIMIT products (of the equality filters' index range) in SKU order; the
        # executor pulls them one by one, so a page that fills early stops early.
        walked = (
            sa.select(*_COLUMNS, _VECTOR.label(search.TSVECTOR_COLUMN))
            .where(*equal)
            .order_by(_c.sku)
            .limit(sa.bindparam("walk_limit", type_=sa.Integer))
            .subquery("walked")
        )
        columns = [walked.c[column.name] for column in _COLUMNS]
        vector = walked.c[search.TSVECTOR_COLUMN]
        walk = sa.select(*columns).where(*rest(walked.c, vector)).order_by(walked.c.sku).limit(limit)
        return _or_through_index(walk, through_index(), limit)
    if shape.drive == "words":
        return _or_through_index(_words_page(shape, equal, rest), through_index(), limit)
    if shape.drive == "leap":
        return _leap_page(shape, equal, rest, through_index(), limit)
    if shape.drive == "text":
        return through_index()
    return _SELECT.where(*equal, *rest(_c, _VECTOR)).order_by(_c.sku).limit(limit)


def _words_page(shape: _Shape, equal: list[Any], rest: Any) -> sa.Select[Any]:
    """PostgreSQL: the products having one of the completions (words beginning the driving query word)
    in SKU order, each range of the words table's key read in order and merged, at most WALK_LIMIT of
    them; each product then checked (its words, the filters) and the page stopped at its end."""
    words = _WORDS.c
    after = [words.sku > _param("after_sku", _c.sku)] if shape.after else []
    walk_limit = sa.bindparam("walk_limit", type_=sa.Integer)
    ranges = [
        sa.select(words.sku).where(words.word == sa.bindparam(f"completion_{i}", type_=sa.Text), *after)
        .order_by(words.sku).limit(walk_limit)  # the limit in each range too: it makes the planner read them in order
        for i in range(shape.completions)
    ]  # fmt: skip
    if len(ranges) == 1:
        candidates = ranges[0].subquery("candidates")
    else:  # a product with two completions is met twice, one after the other
        merged = sa.union_all(*ranges).subquery("merged")
        first = sa.select(merged.c.sku).order_by(merged.c.sku).limit(walk_limit).subquery("first")
        candidates = sa.select(first.c.sku).distinct().subquery("candidates")
    # LATERAL, LIMIT 1 (one product has a SKU; the limit keeps the planner from flattening the subquery
    # into a join): each candidate is looked up by its SKU, in the candidates' order, a nested loop that
    # stops at the page's end. As a join, the planner may hash the first WALK_LIMIT candidates against
    # every match of the GIN index (measured: 20 ms for "green tea" at 100k products, to find none).
    product = (
        sa.select(*_COLUMNS).where(_c.sku == candidates.c.sku, *equal, *rest(_c, _VECTOR)).limit(1).lateral("product")
    )
    limit = sa.bindparam("limit", type_=sa.Integer)
    return (
        sa.select(*product.c).select_from(candidates.join(product, sa.true())).order_by(candidates.c.sku).limit(limit)
    )


def _leap_page(shape: _Shape, equal: list[Any], rest: Any, through_index: sa.Select[Any], limit: Any) -> sa.Select[Any]:
    """PostgreSQL: the products having, for each leaping query word, one of its completions, found in
    SKU order by leaps over the words table's ranges (a leapfrog join), each product then checked (all
    query words, the filters) and the page stopped at its end; through the GIN index instead if the
    leaps were given up (LEAP_LIMIT) before the page was full.

    A step of the leap (a row of the recursive CTE "leap") seeks, from a lower bound, the first SKU
    having the first word (the least over its completions, a seek each), from there the first SKU
    having the second word, and so on, and the first word again: if that SKU is the second word's,
    that product has them all (a hit), and the next step starts after it; otherwise from that SKU, as
    no SKU before it has them all. (The first word sought again makes a step find the next hit in
    either order of the words, "tea green" as "green tea"; it is not sought again when the other
    words were all found at its SKU.) So a step costs a seek per completion wherever the matches lie, and each
    step either finds a match or passes a run of products lacking one of the words: "green tea" is
    flat in the catalog's size where a merge of the words' ranges, or the GIN index, costs every
    product having either word before the page's end (~18-24 ms at 100k products). The steps come
    out in SKU order, so the page is their first hits: no sort of all of them.
    """
    steps = []
    # The seeks of a step: the first word, then each other word, then the first word again.
    for step, i in enumerate([*range(len(shape.leap)), 0]):
        lower = "leap.lower" if step == 0 else f"x{step - 1}.sku"
        # The step's first seek excludes its lower bound after a hit (or the cursor).
        strict = f" AND (w.sku > {lower} OR NOT leap.after)" if step == 0 else ""
        seeks = [
            f"(SELECT w.sku FROM {search.WORDS_TABLE} AS w WHERE w.word = :leap_{i}_{j} AND w.sku >= {lower}{strict}"
            " ORDER BY w.sku LIMIT 1)"
            for j in range(shape.leap[i])
        ]
        seek = seeks[0] if len(seeks) == 1 else f"LEAST({', '.join(seeks)})"
        if step == len(shape.leap):  # no seek when every word so far met at the first one's SKU: a hit
            seek = f"CASE WHEN x{step - 1}.sku = x0.sku THEN x0.sku ELSE {seek} END"
        # OFFSET 0 keeps each seek a subquery run once per step: inlined, each use of its result in
        # the step's columns would run it again.
        steps.append(f"CROSS JOIN LATERAL (SELECT {seek} AS sku OFFSET 0) AS x{step}")
    # x1 .. x(k) are the SKUs of words 1 .. k-1 and 0, each seeked from the one before: equal ends, a
    # product with every word.
    hit, last = "x1.sku", f"x{len(shape.leap)}.sku"
    body = f"""SELECT CAST(:leap_from AS TEXT), CAST(:leap_after AS BOOLEAN), CAST(NULL AS TEXT), 0
        UNION ALL
        SELECT CAST(CASE WHEN {last} = {hit} THEN {hit} ELSE {last} END AS TEXT), {last} = {hit},
               CAST(CASE WHEN {last} = {hit} THEN {hit} END AS TEXT), leap.n + 1
        FROM leap {" ".join(steps)}
        WHERE leap.lower IS NOT NULL AND leap.n < :leap_limit"""
    binds: list[sa.BindParameter[Any]] = [
        sa.bindparam("leap_from", type_=sa.Text),
        sa.bindparam("leap_after", type_=sa.Boolean),
        sa.bindparam("leap_limit", type_=sa.Integer),
        *(sa.bindparam(f"leap_{i}_{j}", type_=sa.Text) for i, count in enumerate(shape.leap) for j in range(count)),
    ]
    # lower: where the next step seeks from (NULL: a word has no SKU left, the leaps are over);
    # after: the first word's seek excludes lower; hit: a product having every leaping word.
    columns: list[sa.ColumnClause[Any]] = [
        sa.column("lower", sa.Text),
        sa.column("after", sa.Boolean),
        sa.column("hit", sa.Text),
    ]
    leap = sa.text(body).bindparams(*binds).columns(*columns, sa.column("n", sa.Integer)).cte("leap", recursive=True)
    product = sa.select(*_COLUMNS).where(_c.sku == leap.c.hit, *equal, *rest(_c, _VECTOR)).limit(1).lateral("product")
    # No ORDER BY: the hits come in SKU order already, and a sort would wait for all of them.
    tried = (
        sa.select(*product.c).select_from(leap.join(product, sa.true())).limit(limit)
        .cte("tried").prefix_with("MATERIALIZED")
    )  # fmt: skip
    found = sa.select(sa.func.count()).select_from(tried).scalar_subquery()
    over = sa.exists().where(leap.c.lower.is_(None))  # the leaps reached the last match
    enough = sa.or_(found >= limit, over)
    fallback = through_index.subquery("through_index")
    page = sa.union_all(sa.select(*tried.c).where(enough), sa.select(*fallback.c).where(sa.not_(enough))).subquery(
        "page"
    )
    return sa.select(*page.c).order_by(page.c.sku)


def _or_through_index(first: sa.Select[Any], fallback: sa.Select[Any], limit: Any) -> sa.Select[Any]:
    """One statement: the page ``first`` reads (its walk is bounded) if it is full, else the page through
    the GIN index, which then costs every match. The count of ``first``'s rows is a one-time filter of
    each branch: PostgreSQL runs the index branch only when it is needed."""
    tried = first.cte("tried").prefix_with("MATERIALIZED")
    count = sa.select(sa.func.count()).select_from(tried).scalar_subquery()
    fallback_page = fallback.subquery("through_index")
    page = sa.union_all(
        sa.select(*tried.c).where(count >= limit),
        sa.select(*fallback_page.c).where(count < limit),
    ).subquery("page")
    return sa.select(*page.c).order_by(page.c.sku)


def _sqlite_page(shape: _Shape) -> sa.Select[Any]:
    def indexed(column: Any, *, unless: bool) -> Any:
        # SQLite uses no index for ``+column`` (its documented way to rule an index out).
        return sa.type_coerce(sa.literal_column(f"+products.{column.name}"), column.type) if unless else column

    param = _param
    off_equality = shape.drive in ("text", "price")
    limit = sa.bindparam("limit", type_=sa.Integer)
    if shape.drive == "text":
        # The matches drive, in SKU order: FTS5 rowids are the products' search_order keys
        # (catalog.search_order), read as a stream from the cursor's key and stopped at the page's end.
        query = sa.select(*_COLUMNS).select_from(sa.join(_FTS5, _products, _c.search_order == _FTS5.c.rowid))
        query = query.where(_fts5_match()).order_by(_FTS5.c.rowid).limit(limit)
        if shape.after:  # after the key of the cursor's SKU (or of the SKU just before it)
            cursor_key = (
                sa.select(_c.search_order)
                .where(_c.sku <= param("after_sku", _c.sku))
                .order_by(_c.sku.desc())
                .limit(1)
                .scalar_subquery()
            )
            query = query.where(_FTS5.c.rowid > sa.func.coalesce(cursor_key, 0))
    else:
        query = _SELECT.order_by(_c.sku).limit(limit)
        if shape.after:
            query = query.where(_c.sku > param("after_sku", _c.sku))
    if shape.active:
        query = query.where(indexed(_c.active, unless=off_equality) == param("active", _c.active))
    if shape.currency:
        query = query.where(indexed(_c.currency, unless=off_equality) == param("currency", _c.currency))
    amount = indexed(_c.price_amount, unless=shape.drive in ("text", "sku"))
    if shape.min_price:
        query = query.where(amount >= param("min_price", _c.price_amount))
    if shape.max_price:
        query = query.where(amount <= param("max_price", _c.price_amount))
    if shape.word_count and not (shape.drive == "text" and shape.fts5_exact):
        query = query.where(search.matches(shape.word_count, "sqlite", document=_c.search_document, vector=None))
    if shape.drive == "price":
        query = query.with_hint(_products, f"INDEXED BY {_PRICE_INDEX}", "sqlite")
    elif shape.drive == "sku":  # at most WALK_LIMIT products from the cursor on
        walk_end = (
            sa.select(_c.sku)
            .where(_c.sku > param("walk_from", _c.sku))
            .order_by(_c.sku)
            .limit(1)
            .offset(sa.bindparam("walk_limit", type_=sa.Integer))
            .scalar_subquery()
        )
        query = query.where(_c.sku <= sa.func.coalesce(walk_end, _AFTER_EVERY_SKU))
    return query


async def _sqlite_planned_rows(db: Database, page: PageQuery) -> Sequence[Any]:
    if page.words and not page.has_price:  # the index's stream in SKU order: no choice to make
        return await db.fetch_all(page_statement("sqlite", page, drive="text"))
    counts = await db.fetch_one(sqlite_probe(page))
    assert counts is not None  # a SELECT of scalars has one row
    text_count, price_count = tuple(counts)
    if page.words:
        if text_count == 0:
            return []  # nothing matches the words: the probe's index lookup is the whole answer
        # The text stream stops at the page's end, but passes the matches outside the price range:
        # a price range that holds fewer products than the text matches drives instead.
        few_prices = price_count < PROBE_LIMIT and price_count < text_count
        return await db.fetch_all(page_statement("sqlite", page, drive="price" if few_prices else "text"))
    if price_count < PROBE_LIMIT:
        return await db.fetch_all(page_statement("sqlite", page, drive="price"))
    rows = await db.fetch_all(page_statement("sqlite", page, drive="sku"))
    if len(rows) > page.limit:
        return rows
    # The walk did not fill the page: the matches lie further on (or there are no more).
    return await db.fetch_all(page_statement("sqlite", page, drive="price"))


def sqlite_probe(page: PageQuery) -> sa.TextClause:
    """The matches of the text and of the price range, each counted through its index up to
    PROBE_LIMIT: a row of two counts, None for a filter the page does not have."""
    values: dict[str, Any] = {"probe_limit": PROBE_LIMIT}
    if page.words:
        values["fts"] = search.fts5_query(page.words)
    if page.has_price:
        values["min_price"] = page.min_price or 0
        if page.max_price is not None:
            values["max_price"] = page.max_price
    return _probe_sql(bool(page.words), page.has_price, page.max_price is not None).bindparams(**values)


@functools.cache
def _probe_sql(text: bool, price: bool, max_price: bool) -> sa.TextClause:
    def capped_count(query: sa.Select[Any]) -> Any:
        limited = query.limit(sa.bindparam("probe_limit", type_=sa.Integer)).subquery()
        return sa.select(sa.func.count()).select_from(limited).scalar_subquery()

    text_count = capped_count(sa.select(_FTS5.c.rowid).where(_fts5_match())) if text else sa.null()
    price_count: Any = sa.null()
    if price:
        amount = _c.price_amount
        in_range = [amount >= sa.bindparam("min_price", type_=amount.type)]
        if max_price:
            in_range.append(amount <= sa.bindparam("max_price", type_=amount.type))
        price_count = capped_count(sa.select(amount).where(*in_range))
    return _prepared(sa.select(text_count, price_count), "sqlite")


def _fts5_match() -> Any:
    return sa.literal_column(search.FTS5_TABLE).op("MATCH")(sa.bindparam("fts", type_=sa.Text))
