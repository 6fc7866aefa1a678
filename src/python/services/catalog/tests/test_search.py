"""Text search: what a query matches (the rules of catalog.search), on SQLite and on PostgreSQL,
through the API; and that every plan of a page answers the same."""

import pytest
import sqlalchemy as sa

from catalog import reads, search
from catalog.tests.conftest import ADMIN
from flotilla_kit.db import Database

# --- the words, without a database ---------------------------------------------------------------


def test_words_are_folded_normalized_runs_of_letters_and_digits():
    assert search.words("Grüner Veltliner, 0.75l") == ["grüner", "veltliner", "0", "75l"]
    assert search.words("STRASSE Straße") == ["strasse", "strasse"]  # case folding, not just lower()
    assert search.words("ｔｅａ ﬁne") == ["tea", "fine"]  # NFKC: full-width letters, ligatures
    assert search.words("100%_off a-b*(c) \"d\" 'e'") == ["100", "off", "a", "b", "c", "d", "e"]
    assert search.words("%_*()\"'-") == []


def test_long_words_are_cut_in_documents_and_queries_alike():
    long_word = "x" * 100
    assert search.words(long_word) == ["x" * search.MAX_WORD_LENGTH]
    assert search.query_words(long_word) == ("x" * search.MAX_WORD_LENGTH,)


def test_a_document_holds_each_word_once():
    assert search.search_document("TEA-1", "Green tea", "Tea, green.") == "tea 1 green"


def test_query_words_drop_words_that_another_query_word_begins_with():
    assert search.query_words("gree green GREEN tea") == ("green", "tea")
    assert search.query_words("%") == ()


def test_query_words_reach_the_engines_as_quoted_words_never_operators():
    words = search.query_words('NEAR(tea* "green") OR -x AND NOT y:*')
    assert words == ("near", "tea", "green", "or", "x", "and", "not", "y")
    assert search.fts5_query(words) == '"near"* "tea"* "green"* "or"* "x"* "and"* "not"* "y"*'
    assert search.tsquery(("thé", "or")) == "'thé':* & 'or':*"


def test_fts5_prefixes_are_cut_to_the_longest_prefix_index():
    assert search.fts5_query(("veltliner", "veltl")) == '"veltli"* "veltl"*'


# --- through the API, on both databases ----------------------------------------------------------


@pytest.fixture
def catalog(create):
    create("TEA-GREEN-250G", name="Green tea", description="Sencha from Shizuoka, 250 g")
    create("TEA-BLACK-100G", name="Earl Grey", description="Black tea with bergamot")
    create("TEA-THE-1", name="Thé vert à la menthe", description="")
    create("WINE-GV-1", name="Grüner Veltliner", description="Dry white wine")
    create("COCOA-1", name="100% cocoa", description="Pure, no sugar")
    create("MUG-A_B", name="A_B special mug", description="")
    create("MUG-AXB", name="AXB mug", description="")
    create("NOVEL-1", name="Near and far", description="Travel stories")


@pytest.fixture
def find(client, catalog):
    def find(q, **params):
        response = client.get("/products", params={"q": q, **params})
        assert response.status_code == 200, (q, response.text)
        return [p["sku"] for p in response.json()["items"]]

    return find


def test_every_query_word_must_begin_a_word_of_the_product_in_any_order(find):
    assert find("tea") == ["TEA-BLACK-100G", "TEA-GREEN-250G", "TEA-THE-1"]
    assert find("green tea") == find("tea green") == ["TEA-GREEN-250G"]
    assert find("sen shiz") == ["TEA-GREEN-250G"]  # prefixes, in the description
    assert find("ncha") == []  # inside a word ("sencha") is not the beginning of one
    # Longer than the FTS5 prefix indexes (6): found through the index by its beginning, then checked whole.
    assert find("veltliner") == ["WINE-GV-1"]
    assert find("veltlinerx") == find("veltlix") == []
    assert find("tea wine") == []


def test_search_ignores_case(find):
    assert find("EARL grey") == find("earl GREY") == ["TEA-BLACK-100G"]
    assert find("BERGAMOT") == ["TEA-BLACK-100G"]


def test_a_sku_or_its_beginning_finds_the_product(find):
    assert find("TEA-GREEN-250G") == ["TEA-GREEN-250G"]
    assert find("tea-green-25") == ["TEA-GREEN-250G"]
    assert find("wine-gv") == ["WINE-GV-1"]


def test_non_ascii_words_fold_case_and_keep_their_diacritics(find):
    assert find("GRÜNER") == find("grü") == ["WINE-GV-1"]
    assert find("thé") == find("THÉ") == ["TEA-THE-1"]
    assert find("à la") == ["TEA-THE-1"]
    assert find("gruner") == []  # ü is not u


def test_sql_wildcards_are_punctuation_not_patterns(find):
    assert find("100%") == ["COCOA-1", "TEA-BLACK-100G"]  # words beginning with 100: "100", "100g"
    assert find("c%a") == []  # LIKE 'c%a' would find "cocoa"
    assert find("a_b") == ["MUG-A_B"]  # words "a" and "b": not "AXB", as LIKE 'a_b' would
    assert find("%") == find("_") == find("%%__") == []


@pytest.mark.parametrize(
    "q, found",
    [
        ('"', []),
        ('"tea', ["TEA-BLACK-100G", "TEA-GREEN-250G", "TEA-THE-1"]),
        ("tea*", ["TEA-BLACK-100G", "TEA-GREEN-250G", "TEA-THE-1"]),
        ("(green) (tea", ["TEA-GREEN-250G"]),
        ("NEAR(tea green)", []),  # "near" is a word, and no tea has it
        ("near", ["NOVEL-1"]),
        ("AND", ["NOVEL-1"]),
        ("tea OR wine", []),
        ("NOT tea", []),
        ("-tea -green", ["TEA-GREEN-250G"]),
        ("tea:* & green | !x", []),
        ("green:*", ["TEA-GREEN-250G"]),
        ("'tea' \\", ["TEA-BLACK-100G", "TEA-GREEN-250G", "TEA-THE-1"]),
        ("^tea + {green}", ["TEA-GREEN-250G"]),
    ],
)
def test_search_engine_syntax_in_a_query_is_plain_text(find, q, found):
    assert find(q) == found


def test_a_query_without_letters_or_digits_matches_nothing(find):
    assert find("  ") == find("--") == find("?!") == []


def test_a_query_longer_than_100_characters_is_a_400_problem(client):
    response = client.get("/products", params={"q": "t" * 101})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/products", params={"q": "t" * 100}).status_code == 200


def test_search_results_page_by_sku_with_the_cursor(client, create):
    skus = [f"TEA-{i:02d}" for i in range(7)]
    for sku in reversed(skus):
        create(sku, name="Tea")
    create("MUG-1", name="Mug")
    seen, cursor = [], None
    while True:
        page = client.get("/products", params={"q": "te", "limit": 3, **({"cursor": cursor} if cursor else {})}).json()
        seen += [p["sku"] for p in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == skus


def test_a_search_of_several_words_pages_by_sku_with_the_cursor(client, create):
    names = ["Green tea", "Black tea", "Green mug", "Tea green", "Greenish teapot", "Mint tea"]
    for i in reversed(range(18)):
        create(f"P-{i:02d}", name=names[i % 6])
    seen, cursor = [], None
    while True:
        params = {"q": "TEA green", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/products", params=params).json()
        seen += [p["sku"] for p in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    # Both words begin words of the product, in any order: green tea, tea green, greenish teapot.
    assert seen == [f"P-{i:02d}" for i in range(18) if i % 6 in (0, 3, 4)]


def test_search_combines_with_the_filters(find, client):
    assert find("tea", min_price=0, max_price=450, currency="EUR", active="true") == [
        "TEA-BLACK-100G",
        "TEA-GREEN-250G",
        "TEA-THE-1",
    ]
    assert find("tea", currency="USD") == []


def test_changing_a_name_or_description_changes_what_finds_the_product(client, create, find):
    product = create("X-1", name="Oolong", description="Taiwan")
    assert find("oolong") == ["X-1"]
    client.patch(f"/products/{product['id']}", json={"name": "Jasmine", "description": "Fujian"}, headers=ADMIN)
    assert find("oolong") == find("taiwan") == []
    assert find("jasmine fujian") == ["X-1"]


# --- every plan of a page answers the same -------------------------------------------------------


@pytest.mark.parametrize(
    "probe_limit, walk_limit, max_completions, leap_limit",
    [
        # SQLite: always through the smallest index; PostgreSQL: the words' ranges, or leaps over them
        (10**9, 10**9, 16, 10**9),
        (1, 10**9, 0, 10**9),  # always by a walk of the SKU order, which reaches the end
        (1, 3, 0, 10**9),  # a walk that gives up early, then through an index
        (1, 3, 16, 2),  # PostgreSQL: the words' ranges or leaps given up early, then through the GIN index
        (1, 3, 1, 10**9),  # PostgreSQL: one completion or none per word: "tea" (tea, teapot) walks
    ],
)
async def test_every_plan_of_a_page_finds_the_same_products(
    settings, client, create, monkeypatch, probe_limit, walk_limit, max_completions, leap_limit
):
    for i in range(40):
        kind = ("Green tea", "Black tea", "Mug", "Teapot for tea")[i % 4]  # two words beginning "tea"
        create(f"P-{i:03d}", name=f"{kind} {i}", amount=100 * i, currency=("EUR", "USD")[i % 3 == 0])
    queries = [
        reads.PageQuery(limit=5, words=("tea",)),
        reads.PageQuery(limit=5, words=("tea",), after_sku="P-010"),
        reads.PageQuery(limit=50, words=("green", "te")),
        reads.PageQuery(limit=5, words=("teap",), currency="EUR"),
        reads.PageQuery(limit=5, min_price=500, max_price=2500),
        reads.PageQuery(limit=5, words=("tea",), min_price=1000, active=True),
        reads.PageQuery(limit=5, words=("nothing",)),
        reads.PageQuery(limit=5, words=("te", "4")),  # "4", "40"...: the driving word is the longest
        reads.PageQuery(limit=3, words=("tea",), currency="USD", after_sku="P-003"),
        # Several words, each with few completions (PostgreSQL: leaps over the words table)
        reads.PageQuery(limit=5, words=("green", "tea")),
        reads.PageQuery(limit=5, words=("tea", "green")),  # "tea": two completions, tea and teapot
        reads.PageQuery(limit=50, words=("green", "tea")),  # fewer than the page: the leaps reach the end
        reads.PageQuery(limit=3, words=("tea", "green"), after_sku="P-012"),
        reads.PageQuery(limit=3, words=("black", "tea"), currency="USD", min_price=500),
        reads.PageQuery(limit=5, words=("teapot", "for", "tea")),
        reads.PageQuery(limit=5, words=("green", "black")),  # both common, never together
        reads.PageQuery(limit=5, words=("green", "nothing")),
        reads.PageQuery(limit=5, words=("green", "tea", "te")),  # and a short word, only checked
        reads.PageQuery(limit=5, words=("mug", "3")),
    ]
    db = Database(settings.database_url)
    try:
        expected = [[p.sku for p in await reads.read_page(db, query)] for query in queries]
        monkeypatch.setattr(reads, "PROBE_LIMIT", probe_limit)
        monkeypatch.setattr(reads, "WALK_LIMIT", walk_limit)
        monkeypatch.setattr(reads, "MAX_COMPLETIONS", max_completions)
        monkeypatch.setattr(reads, "LEAP_LIMIT", leap_limit)
        assert [[p.sku for p in await reads.read_page(db, query)] for query in queries] == expected
    finally:
        await db.dispose()
    # And they are right: the first page of "tea" (and "teapot") in SKU order, with the one beyond it.
    assert expected[0] == ["P-000", "P-001", "P-003", "P-004", "P-005", "P-007"]
    assert expected[9] == expected[10] == ["P-000", "P-004", "P-008", "P-012", "P-016", "P-020"]
    assert expected[11] == [f"P-{i:03d}" for i in range(0, 40, 4)]
    assert expected[12] == ["P-016", "P-020", "P-024", "P-028"]
    assert expected[13] == ["P-009", "P-021", "P-033"]  # black tea in USD (i % 3 == 0) from 5.00
    assert expected[14] == ["P-003", "P-007", "P-011", "P-015", "P-019", "P-023"]
    assert expected[15] == expected[16] == []
    assert expected[17] == expected[9]
    assert expected[18] == ["P-030", "P-034", "P-038"]  # mugs are i % 4 == 2; "3" begins "30", not "030"


async def test_postgresql_words_table_holds_every_products_words_after_creates_and_changes(settings, client, create):
    if settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only: SQLite's FTS5 index is checked in test_search_order")
    create("TEA-1", name="Green tea", description="Sencha")
    kettle = create("KET-1", name="Kettle", description="Steel, 1.7 l")
    client.patch(f"/products/{kettle['id']}", json={"name": "Glass kettle"}, headers=ADMIN)
    client.patch(f"/products/{kettle['id']}", json={"price": {"amount": 990, "currency": "EUR"}}, headers=ADMIN)
    db = Database(settings.database_url)
    try:
        async with db.reader() as session:
            rows = (await session.execute(sa.text(f"SELECT word, sku FROM {search.WORDS_TABLE}"))).all()
    finally:
        await db.dispose()
    assert sorted(map(tuple, rows)) == sorted(
        [(word, "TEA-1") for word in ("tea", "1", "green", "sencha")]
        + [(word, "KET-1") for word in ("ket", "1", "glass", "kettle", "steel", "7", "l")]
    )
