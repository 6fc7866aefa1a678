"""release: versions, contract snapshots and the compatibility check of the shared libraries."""
