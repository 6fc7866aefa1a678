"""Entry point of stack.pex and ``python -m stack``: ``up``, ``down``, ``status``, ``logs``, ``demo``."""

from __future__ import annotations

import sys

from stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
