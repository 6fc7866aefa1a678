"""The console's Alembic revisions build exactly what the models declare and downgrade cleanly (on SQLite:
the console keeps its traces and audit log in its own SQLite file)."""

from flotilla_kit.testing.migrations import assert_downgrade_round_trips, assert_migrations_match_models

MIGRATIONS = "console.migrations"


def test_the_migrations_build_what_the_models_declare(tmp_path):
    assert_migrations_match_models(MIGRATIONS, f"sqlite+aiosqlite:///{tmp_path}/console.db")


def test_the_migrations_downgrade_to_base_and_upgrade_again(tmp_path):
    assert_downgrade_round_trips(MIGRATIONS, f"sqlite+aiosqlite:///{tmp_path}/console.db")
