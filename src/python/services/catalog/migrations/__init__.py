"""Catalog schema migrations, applied in order by `catalog.pex migrate` (see flotilla_kit.migrations)."""
