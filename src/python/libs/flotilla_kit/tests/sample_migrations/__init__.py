"""Migrations used by the migration runner's tests."""
