"""The outbox and inbox tables, in every service database that publishes or consumes.

A service creates them in one of its own Alembic revisions, and lists ``metadata`` in its env.py
(``run_env(Base.metadata, flotilla_streams.schema.metadata)``) so the models-match check covers them::

    from alembic import op

    from flotilla_streams.schema import create_messaging_tables, drop_messaging_tables

    def upgrade() -> None:
        create_messaging_tables(op.get_bind())

    def downgrade() -> None:
        drop_messaging_tables(op.get_bind())
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

outbox = sa.Table(
    "flotilla_outbox",
    metadata,
    # Autoincrement order is publish order: the relay forwards by ascending id.
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("stream", sa.String(200), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("envelope", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_flotilla_outbox_unsent", "sent_at", "id"),
)

inbox = sa.Table(
    "flotilla_inbox",
    metadata,
    sa.Column("consumer_group", sa.String(200), primary_key=True),
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
)

# Who relays a SQLite database's outbox: replicas of a service may share the file (processes on one
# host), and one relay at a time keeps the events in order and sends each once. PostgreSQL needs no
# row for it (an advisory lock per pass does it).
relay_lease = sa.Table(
    "flotilla_outbox_relay_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


def create_messaging_tables(connection: sa.Connection) -> None:
    """Create the outbox and inbox tables (idempotent)."""
    metadata.create_all(connection)


def drop_messaging_tables(connection: sa.Connection) -> None:
    """Drop the tables create_messaging_tables creates (idempotent): the downgrade of its revision."""
    metadata.drop_all(connection)
