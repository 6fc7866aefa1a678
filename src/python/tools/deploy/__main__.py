"""Entry point of deploy.pex and ``python -m deploy``: ``render``, ``render --check``."""

from __future__ import annotations

import sys

from deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())
