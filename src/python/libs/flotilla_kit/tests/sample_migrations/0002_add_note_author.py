import sqlalchemy as sa


def upgrade(connection: sa.Connection) -> None:
    connection.execute(sa.text("ALTER TABLE notes ADD COLUMN author VARCHAR(100) NOT NULL DEFAULT 'anonymous'"))
