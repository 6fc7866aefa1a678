"""The inventory's migrations build exactly what its models declare, and come down again."""

from flotilla_kit.testing.migrations import assert_downgrade_round_trips, assert_migrations_match_models


def test_migrations_match_the_models(database_url):
    assert_migrations_match_models("inventory.migrations", database_url)


def test_migrations_downgrade_to_base_and_back(database_url):
    assert_downgrade_round_trips("inventory.migrations", database_url)
