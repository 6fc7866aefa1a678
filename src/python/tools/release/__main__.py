"""Entry point of release.pex and ``python -m release``: ``check``, ``bump``, ``snapshot``."""

from __future__ import annotations

import sys

from release.cli import main

if __name__ == "__main__":
    sys.exit(main())
