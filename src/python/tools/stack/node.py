"""The platform's Node.js service (``src/js/services/loyalty``) as a process: where it is, how to run it.

It runs from its sources with the ``node`` on PATH (Node.js 20 or later) and the packages that
``npm ci`` installed into its ``node_modules``; there is nothing to build. The JavaScript sources
are found at ``FLOTILLA_JS_ROOT`` (the repository's ``src/js``; Pants' test sandbox has no
``node_modules``, so ``pants.toml`` points the tests there), else at ``src/js`` under the current
directory (``./pants run`` runs in the build root), else beside this file in the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOYALTY = "loyalty"
JS_ROOT_VARIABLE = "FLOTILLA_JS_ROOT"
MIN_NODE_MAJOR = 20
_PACKAGES = ("ioredis", "ajv", "ajv-formats")  # what main.js imports: its package.json dependencies


class NodeUnavailable(RuntimeError):
    """Node.js or the service's installed packages are missing; the message says which and what to run."""


@dataclass(frozen=True)
class NodeService:
    """A Node.js service ready to run: ``command`` starts it; its settings come from the environment."""

    name: str
    directory: Path
    node: str

    @property
    def command(self) -> list[str]:
        return [self.node, str(self.directory / "main.js")]


def js_root() -> Path:
    """The repository's ``src/js`` (see the module's docstring for the order of the places tried)."""
    configured = os.environ.get(JS_ROOT_VARIABLE)
    if configured:
        return Path(configured).resolve()
    here = Path.cwd() / "src" / "js"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "js"


def find_service(name: str = LOYALTY, root: Path | None = None) -> NodeService:
    """The Node.js service ``name``; raises NodeUnavailable (one line: what is missing, what to do)."""
    directory = (root or js_root()) / "services" / name
    if not (directory / "main.js").is_file():
        raise NodeUnavailable(f"no Node.js service at {directory} (set {JS_ROOT_VARIABLE} to the repository's src/js)")
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable("node is not on PATH (install Node.js 20 or later)")
    major = _node_major(node)
    if major is None or major < MIN_NODE_MAJOR:
        raise NodeUnavailable(f"{node} is not Node.js {MIN_NODE_MAJOR} or later")
    missing = [p for p in _PACKAGES if not (directory / "node_modules" / p / "package.json").is_file()]
    if missing:
        raise NodeUnavailable(
            f"its packages are not installed ({', '.join(missing)} missing in {directory / 'node_modules'}); "
            f"run `npm ci` in {directory}"
        )
    return NodeService(name=name, directory=directory, node=node)


def _node_major(node: str) -> int | None:
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"v(\d+)\.", version.strip())
    return int(match.group(1)) if match else None
