"""Indexed text search (FTS5 on SQLite, GIN on PostgreSQL) and indexes for the listing's filters.

See catalog.search for what the search matches and why each index is built this way.
"""

import sqlalchemy as sa
from alembic import op

from catalog.search import FTS5_PREFIX_LENGTH, FTS5_TABLE, GIN_INDEX, TSVECTOR_COLUMN, search_document

revision = "0003"
down_revision = "0002"

_BATCH = 1000
_products = sa.table(
    "products",
    sa.column("sku", sa.String),
    sa.column("name", sa.String),
    sa.column("description", sa.Text),
    sa.column("search_document", sa.Text),
)

_FTS5_TABLE = (
    f"CREATE VIRTUAL TABLE {FTS5_TABLE} USING fts5(search_document, content='products', content_rowid='rowid', "
    f"tokenize='ascii', prefix='{' '.join(str(n) for n in range(1, FTS5_PREFIX_LENGTH + 1))}', detail='none')"
)
# External content: FTS5 stores only the index, and must be told the old words of a row to remove them.
_FTS5_TRIGGERS = {
    "products_search_insert": f"""
        CREATE TRIGGER products_search_insert AFTER INSERT ON products BEGIN
            INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.rowid, new.search_document);
        END""",
    "products_search_delete": f"""
        CREATE TRIGGER products_search_delete AFTER DELETE ON products BEGIN
            INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
                VALUES ('delete', old.rowid, old.search_document);
        END""",
    "products_search_update": f"""
        CREATE TRIGGER products_search_update AFTER UPDATE OF search_document ON products BEGIN
            INSERT INTO {FTS5_TABLE}({FTS5_TABLE}, rowid, search_document)
                VALUES ('delete', old.rowid, old.search_document);
            INSERT INTO {FTS5_TABLE}(rowid, search_document) VALUES (new.rowid, new.search_document);
        END""",
}


def upgrade() -> None:
    # The default only fills existing rows before the backfill; the service always writes the column.
    op.add_column("products", sa.Column("search_document", sa.Text, nullable=False, server_default=""))
    _backfill_search_documents()
    op.drop_index("ix_products_active", table_name="products")
    op.create_index("ix_products_active_sku", "products", ["active", "sku"])
    op.create_index("ix_products_currency_sku", "products", ["currency", "sku"])
    op.create_index("ix_products_price_sku", "products", ["price_amount", "sku"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_FTS5_TABLE)
        op.execute(f"INSERT INTO {FTS5_TABLE}({FTS5_TABLE}) VALUES ('rebuild')")  # index the existing rows
        for trigger in _FTS5_TRIGGERS.values():
            op.execute(trigger)
    else:
        op.execute(
            f"ALTER TABLE products ADD COLUMN {TSVECTOR_COLUMN} tsvector "
            "GENERATED ALWAYS AS (search_document::tsvector) STORED"
        )
        op.execute(f"CREATE INDEX {GIN_INDEX} ON products USING gin ({TSVECTOR_COLUMN})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in _FTS5_TRIGGERS:
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute(f"DROP TABLE {FTS5_TABLE}")
    else:
        op.drop_index(GIN_INDEX, table_name="products")
        op.drop_column("products", TSVECTOR_COLUMN)
    op.drop_index("ix_products_price_sku", table_name="products")
    op.drop_index("ix_products_currency_sku", table_name="products")
    op.drop_index("ix_products_active_sku", table_name="products")
    op.create_index("ix_products_active", "products", ["active"])
    with op.batch_alter_table("products") as batch:
        batch.drop_column("search_document")


def _backfill_search_documents() -> None:
    # Computed in Python by the service's own function (it is the definition of the words); a later
    # revision that changes the function recomputes every row the same way. In batches, in SKU order.
    bind = op.get_bind()
    columns = (_products.c.sku, _products.c.name, _products.c.description)
    after = ""
    while batch := bind.execute(
        sa.select(*columns).where(_products.c.sku > after).order_by(_products.c.sku).limit(_BATCH)
    ).all():
        bind.execute(
            _products.update().where(_products.c.sku == sa.bindparam("row_sku")),
            [{"row_sku": sku, "search_document": search_document(sku, name, text)} for sku, name, text in batch],
        )
        after = batch[-1].sku
