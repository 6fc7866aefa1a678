"""Stock per product with its movements, reservations per order, and the outbox and inbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from flotilla_streams.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stock",
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="ck_stock_reserved_not_negative"),
        sa.CheckConstraint("reserved <= on_hand", name="ck_stock_reserved_within_on_hand"),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "stock_movements",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("on_hand_after", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stock_movements_product_id_id", "stock_movements", ["product_id", "id"])
    op.create_table(
        "reservations",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('reserved', 'rejected', 'released', 'committed')", name="ck_reservations_status_known"
        ),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "reservation_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["reservations.order_id"], name="fk_reservation_lines_order_id"),
        sa.PrimaryKeyConstraint("order_id", "product_id"),
    )
    create_messaging_tables(op.get_bind())


def downgrade() -> None:
    drop_messaging_tables(op.get_bind())
    op.drop_table("reservation_lines")
    op.drop_table("reservations")
    op.drop_index("ix_stock_movements_product_id_id", table_name="stock_movements")
    op.drop_table("stock_movements")
    op.drop_table("stock")
