"""SQLite: FTS5 entries keyed by the products' place in the SKU order (``search_order``), so that a
search page is read from the index in SKU order and stops at its end (see catalog.search_order).

PostgreSQL gets the column too (one model for both), and leaves it NULL.
"""

import sqlalchemy as sa
from alembic import op

from catalog.search import FTS5_PREFIX_LENGTH, FTS5_TABLE
from catalog.search_order import RENUMBER_ALL

revision = "0004"
down_revision = "0003"

_OLD_TRIGGERS = ("products_search_insert", "products_search_delete", "products_search_update")


def _fts5_table(rowid: str) -> str:
    prefixes = " ".join(str(n) for n in range(1, FTS5_PREFIX_LENGTH + 1))
    return (
        f"CREATE VIRTUAL TABLE {FTS5_TABLE} USING fts5(search_document, content='products', "
        f"content_rowid='{rowid}', tokenize='ascii', prefix='{prefixes}', detail='none')"
    )


# Products without a key (loaded in bulk, before RENUMBER_ALL) are not in the index yet. A change of
# key is not a trigger's business: catalog.search_order moves the entries itself.
_TRIGGERS = (
    f"""CREATE TRIGGER products_search_insert AFTER INSERT ON products WHEN new.search_order IS NOT NULL BEGIN
        INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.search_order, new.search_document);
    END""",
    f"""CREATE TRIGGER products_search_delete AFTER DELETE ON products WHEN old.search_order IS NOT NULL BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
            VALUES ('delete', old.search_order, old.search_document);
    END""",
    f"""CREATE TRIGGER products_search_update AFTER UPDATE OF search_document ON products
        WHEN old.search_order IS NOT NULL BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
            VALUES ('delete', old.search_order, old.search_document);
        INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.search_order, new.search_document);
    END""",
)

# Revision 0003's, for the downgrade.
_OLD_TRIGGER_SQL = (
    f"""CREATE TRIGGER products_search_insert AFTER INSERT ON products BEGIN
        INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.rowid, new.search_document);
    END""",
    f"""CREATE TRIGGER products_search_delete AFTER DELETE ON products BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
            VALUES ('delete', old.rowid, old.search_document);
    END""",
    f"""CREATE TRIGGER products_search_update AFTER UPDATE OF search_document ON products BEGIN
        INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
            VALUES ('delete', old.rowid, old.search_document);
        INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.rowid, new.search_document);
    END""",
)


def upgrade() -> None:
    op.add_column("products", sa.Column("search_order", sa.BigInteger, nullable=True))
    op.create_index("ix_products_search_order", "products", ["search_order"], unique=True)
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in _OLD_TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}")
    op.execute(f"DROP TABLE {FTS5_TABLE}")
    op.execute(_fts5_table("search_order"))
    for trigger in _TRIGGERS:
        op.execute(trigger)
    for statement in RENUMBER_ALL:  # number the existing products and index them under their keys
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        for trigger in _OLD_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute(f"DROP TABLE {FTS5_TABLE}")
    op.drop_index("ix_products_search_order", table_name="products")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("search_order")
    if sqlite:  # after the batch, which copies the table (new rowids, and no triggers)
        op.execute(_fts5_table("rowid"))
        op.execute(f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}) VALUES ('rebuild')")
        for trigger in _OLD_TRIGGER_SQL:
            op.execute(trigger)
