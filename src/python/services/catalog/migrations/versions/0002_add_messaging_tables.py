"""The outbox (and inbox) of flotilla_streams: the catalog publishes its events through the outbox."""

from alembic import op

from flotilla_streams.schema import create_messaging_tables, drop_messaging_tables

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    create_messaging_tables(op.get_bind())


def downgrade() -> None:
    drop_messaging_tables(op.get_bind())
