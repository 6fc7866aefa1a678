"""Who wrote a note; notes written before have an anonymous author."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("notes", sa.Column("author", sa.String(100), nullable=False, server_default="anonymous"))
    op.create_index("ix_notes_author", "notes", ["author"])


def downgrade() -> None:
    # SQLite drops a column by copying the table: batch mode does it (and is plain ALTER elsewhere).
    with op.batch_alter_table("notes") as batch:
        batch.drop_index("ix_notes_author")
        batch.drop_column("author")
