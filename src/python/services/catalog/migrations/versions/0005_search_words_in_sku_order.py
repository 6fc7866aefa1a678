"""PostgreSQL: every word of every product with its SKU, ``product_words``, keyed (word, SKU), so that a
search page reads the products having a word in SKU order and stops at the page's end (see
catalog.search and catalog.reads). Kept in step with ``products.search_document`` by statement-level
triggers (one INSERT per statement, so a bulk COPY costs one set-based insert, not a call per row).

SQLite has its FTS5 index keyed in SKU order (revision 0004) and gets nothing here.
"""

from alembic import op

from catalog.search import WORDS_TABLE

revision = "0005"
down_revision = "0004"

# Words are compared byte by byte (COLLATE "C"): a prefix is then one range of the key, whatever the
# database's collation. SKUs keep the column's collation, that of products.sku, so the order of a
# word's SKUs is the listing's order.
_TABLE = f"""
CREATE TABLE {WORDS_TABLE} (
    word text COLLATE "C" NOT NULL,
    sku varchar(64) NOT NULL,
    PRIMARY KEY (word, sku)
)"""

_WORDS_OF = "SELECT DISTINCT word, {rows}.sku FROM {rows}, unnest(string_to_array({rows}.search_document, ' ')) AS word"
_FUNCTIONS = {
    "product_words_insert": f"""
        INSERT INTO {WORDS_TABLE} (word, sku) {_WORDS_OF.format(rows="inserted")} WHERE word <> '';
        RETURN NULL;""",
    "product_words_delete": f"""
        DELETE FROM {WORDS_TABLE} WHERE (word, sku) IN ({_WORDS_OF.format(rows="deleted")});
        RETURN NULL;""",
    # Only the rows whose words (or SKU) changed: a price change costs the join of two small tables.
    "product_words_update": f"""
        DELETE FROM {WORDS_TABLE} WHERE (word, sku) IN (
            SELECT word, deleted.sku FROM deleted JOIN inserted USING (id),
                unnest(string_to_array(deleted.search_document, ' ')) AS word
            WHERE (deleted.search_document, deleted.sku) IS DISTINCT FROM (inserted.search_document, inserted.sku));
        INSERT INTO {WORDS_TABLE} (word, sku)
            SELECT DISTINCT word, inserted.sku FROM inserted JOIN deleted USING (id),
                unnest(string_to_array(inserted.search_document, ' ')) AS word
            WHERE word <> ''
              AND (deleted.search_document, deleted.sku) IS DISTINCT FROM (inserted.search_document, inserted.sku);
        RETURN NULL;""",
}
_TRIGGERS = {
    "product_words_insert": "AFTER INSERT ON products REFERENCING NEW TABLE AS inserted",
    "product_words_delete": "AFTER DELETE ON products REFERENCING OLD TABLE AS deleted",
    "product_words_update": "AFTER UPDATE ON products REFERENCING OLD TABLE AS deleted NEW TABLE AS inserted",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute(_TABLE)
    op.execute(f"INSERT INTO {WORDS_TABLE} (word, sku) {_WORDS_OF.format(rows='products')} WHERE word <> ''")
    for name, body in _FUNCTIONS.items():
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$")
        op.execute(f"CREATE TRIGGER {name} {_TRIGGERS[name]} FOR EACH STATEMENT EXECUTE FUNCTION {name}()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for name in _FUNCTIONS:
        op.execute(f"DROP TRIGGER {name} ON products")
        op.execute(f"DROP FUNCTION {name}()")
    op.execute(f"DROP TABLE {WORDS_TABLE}")
