"""Indexes for the operators' views of every customer's orders, newest first: all, or by saga state."""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("ix_orders_created", "orders", ["created_at", "id"])
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_orders_status_created", "orders")
    op.drop_index("ix_orders_created", "orders")
