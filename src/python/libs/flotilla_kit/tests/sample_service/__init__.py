"""A service's models and migrations, laid out as every service's are, for the migration tests."""
