"""The trace store (traces, spans, attribute values) and the audit log."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "console_traces",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False, unique=True),
        sa.Column("span_count", sa.Integer, nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("root_service", sa.String(200), nullable=False),
        sa.Column("root_name", sa.String(500), nullable=False),
        sa.Column("has_root", sa.Boolean, nullable=False),
        sa.Column("has_error", sa.Boolean, nullable=False),
        sa.Column("services", sa.Text, nullable=False),
    )
    op.create_index("ix_console_traces_start", "console_traces", ["start_ns"])
    op.create_table(
        "console_spans",
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("parent_span_id", sa.String(16), nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("instance", sa.String(200), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("start_ns", sa.BigInteger, nullable=False),
        sa.Column("end_ns", sa.BigInteger, nullable=False),
        sa.Column("duration_ns", sa.BigInteger, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("status_message", sa.Text, nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),
        sa.Column("links", sa.Text, nullable=False),
    )
    op.create_index("ix_console_spans_service_name", "console_spans", ["service", "name"])
    op.create_index("ix_console_spans_duration", "console_spans", ["duration_ns"])
    op.create_table(
        "console_span_values",
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("span_id", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_index("ix_console_span_values_value", "console_span_values", ["value"])
    op.create_table(
        "console_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("outcome", sa.String(500), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_audit")
    op.drop_table("console_span_values")
    op.drop_table("console_spans")
    op.drop_table("console_traces")
