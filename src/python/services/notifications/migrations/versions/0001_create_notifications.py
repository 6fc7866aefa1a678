"""Create the notifications table, and the inbox (and outbox) of messaging."""

import sqlalchemy as sa
from alembic import op

from flotilla_streams.schema import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id", "kind", name="uq_notifications_order_id_kind"),
    )
    op.create_index("ix_notifications_created_at_id", "notifications", ["created_at", "id"])
    op.create_index("ix_notifications_customer_id_created_at_id", "notifications", ["customer_id", "created_at", "id"])
    # The inbox makes redeliveries harmless; the outbox comes with it, unused (nothing is published).
    create_messaging_tables(op.get_bind())


def downgrade() -> None:
    drop_messaging_tables(op.get_bind())
    op.drop_index("ix_notifications_customer_id_created_at_id", table_name="notifications")
    op.drop_index("ix_notifications_created_at_id", table_name="notifications")
    op.drop_table("notifications")
