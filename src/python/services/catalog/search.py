"""The catalog's text search: what a query matches, and how each database finds it with an index.

Semantics (the same on SQLite and PostgreSQL; ``SEMANTICS`` is the OpenAPI text):

- A product's *words* are the runs of letters and digits of its SKU, name and description, after
  Unicode NFKC normalization and case folding; everything else (spaces, punctuation, symbols,
  ``%``, ``_``, quotes, ``*``, parentheses) only separates words. Words are kept to their first
  ``MAX_WORD_LENGTH`` characters.
- A query is cut into words the same way; a product matches when *every* query word is the
  beginning of one of its words (prefix match, case-insensitive, in any order). Diacritics count:
  ``thé`` finds ``Thé vert`` but not ``the``.
- A query without words (``%``, ``--``) matches nothing. Operators of the search engines (``AND``,
  ``OR``, ``NOT``, ``NEAR``) are plain words.

The words of a product are stored with it (``products.search_document``, one space between words),
written by the service in the same statement as the product. Each backend indexes that column:

- SQLite: an external-content FTS5 table, ``products_search``, with the ``ascii`` tokenizer (it
  splits the document exactly at its spaces, as non-ASCII characters are word characters to it),
  prefix indexes for 1 to ``FTS5_PREFIX_LENGTH`` characters, ``detail=none`` (no positions: no
  phrase queries are made). Triggers keep it in step with ``products`` (see revision 0003).
- PostgreSQL: a GIN index on ``search_vector``, a stored generated column holding
  ``search_document::tsvector``. The text-to-tsvector cast splits at spaces and keeps each word as
  it is (no parser, no dictionary), so the lexemes are exactly our words, and ``'word':*`` in a
  tsquery is a prefix match. Stored, not an expression index: the cast costs ~20 us per row, and a
  walk of the SKU order tests every row it passes (measured: 1.8 s to pass 80k rows).

- PostgreSQL also keeps ``product_words``, (word, SKU) for every word of every product, keyed in
  that order and kept in step by triggers (revision 0005): the products having a word, or one of the
  few words that begin with a query word, are one range (or a merge of a few ranges) of that key in
  SKU order, so a page stops after its 50 products wherever they lie; a GIN index cannot give an
  order, so it costs every match (see catalog.reads).

The indexes only narrow: the match itself is stated once in SQL (``matches``), so every plan of a
page (through an index, through the words table, or walking the SKU order) answers the same.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Longer words are cut (both in documents and in queries): a PostgreSQL lexeme holds at most 2046
# bytes, and nobody searches for 65 characters of one word.
MAX_WORD_LENGTH = 64
# FTS5 keeps prefix indexes for query words of 1..6 characters, so every prefix query is a lookup
# of one index entry, read as a stream. A prefix longer than any prefix index makes FTS5 merge the
# rowids of every word it begins first (measured: ~6 ms per 10k matches). Longer query words are
# cut to this length for the index, and matched in full by ``matches``.
FTS5_PREFIX_LENGTH = 6
FTS5_TABLE = "products_search"
TSVECTOR_COLUMN = "search_vector"
GIN_INDEX = "ix_products_search"
# PostgreSQL: (word, SKU) of every word of every product (revision 0005).
WORDS_TABLE = "product_words"

SEMANTICS = (
    "Words to find (at most 100 characters). Every word of the query must begin a word of the product's SKU, "
    "name or description: prefix match, case-insensitive (Unicode case folding and NFKC normalization), "
    "words in any order. Words are runs of letters and digits; everything else, including % _ * \" ' ( ) - "
    "and spaces, only separates words, and search operators (AND, OR, NOT, NEAR) are plain words. A SKU's "
    "parts are words, so a SKU or its beginning finds it (TEA-GREEN-25 finds TEA-GREEN-250G). Diacritics "
    "count (thé finds Thé, not The). A query with no letters or digits matches nothing. Results keep the "
    "listing's order, by SKU, and page with `cursor` like any listing."
)

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of ``text`` as search sees them (normalized, folded, cut), in order."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return [word[:MAX_WORD_LENGTH] for word in _WORD.findall(folded)]


def search_document(sku: str, name: str, description: str) -> str:
    """What is stored in ``products.search_document``: the product's distinct words, space-separated."""
    return " ".join(dict.fromkeys(words(f"{sku} {name} {description}")))


def query_words(query: str) -> tuple[str, ...]:
    """The words a product must have (as prefixes) to match ``query``; () matches nothing.

    A word that begins another query word adds nothing (that one implies it) and is dropped."""
    found = list(dict.fromkeys(words(query)))
    return tuple(word for word in found if not any(other != word and other.startswith(word) for other in found))


def matches(word_count: int, dialect: str, *, document: Any, vector: Any) -> Any:
    """The SQL condition that a product matches a query of ``word_count`` words, given its
    ``search_document`` (SQLite) and ``search_vector`` (PostgreSQL) columns, with named parameters:
    give them the values of ``match_parameters``. (The statement depends on the number of words
    only, so it is compiled once per count.)"""
    if dialect == "postgresql":
        return vector.op("@@")(sa.cast(sa.bindparam("tsquery", type_=sa.Text), postgresql.TSQUERY))
    # Some word begins with w  <=>  " " || document contains " " || w (words hold no spaces).
    spaced = sa.literal(" ") + document
    return sa.and_(*(sa.func.instr(spaced, sa.bindparam(f"word_{i}", type_=sa.Text)) > 0 for i in range(word_count)))


def match_parameters(query: tuple[str, ...], dialect: str) -> dict[str, str]:
    """The values of the parameters of ``matches`` for ``query``."""
    if dialect == "postgresql":
        return {"tsquery": tsquery(query)}
    return {f"word_{i}": " " + word for i, word in enumerate(query)}


def tsquery(query: tuple[str, ...]) -> str:
    """A tsquery of prefix matches; words are letters and digits only, so quoting needs no escapes."""
    return " & ".join(f"'{word}':*" for word in query)


def fts5_query(query: tuple[str, ...]) -> str:
    """An FTS5 MATCH expression finding (at least) the products that match ``query``.

    Each word is a quoted string (never an operator: NEAR, AND, OR and NOT are words inside quotes)
    followed by ``*``, cut to the longest prefix index."""
    return " ".join(f'"{word[:FTS5_PREFIX_LENGTH]}"*' for word in dict.fromkeys(query))


def is_search_object(name: str | None, type_: str) -> bool:
    """Whether a database object belongs to the search index (no model declares it: SQLite's FTS5
    table and its shadow tables; PostgreSQL's tsvector column, generated, its GIN index and the words table)."""
    if name is None:
        return False
    return (
        (type_ == "table" and name.startswith(FTS5_TABLE))
        or (type_ == "table" and name == WORDS_TABLE)
        or (type_ == "index" and name == GIN_INDEX)
        or (type_ == "column" and name == TSVECTOR_COLUMN)
    )
