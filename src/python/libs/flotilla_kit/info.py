"""Versions of what runs inside this process, for /info and the CLI's --version."""

from __future__ import annotations

import importlib
import pkgutil
import platform
import re
from importlib import metadata, resources

# Third-party distributions worth reporting when someone asks "what exactly is deployed?".
_DISTRIBUTIONS = ("litestar", "msgspec", "sqlalchemy", "granian", "redis")
# setuptools_scm's local version: +g<commit>, and .d<date> when the tree had uncommitted changes.
_COMMIT = re.compile(r"\+g(?P<commit>[0-9a-f]{7,40})(?P<dirty>\.d\d{8})?")


def read_version(package: str) -> str:
    """The version in ``package``'s VERSION file (how every flotilla lib keeps its version)."""
    try:
        return (resources.files(package) / "VERSION").read_text().strip()
    except (FileNotFoundError, ModuleNotFoundError, TypeError):  # TypeError: a module, not a package
        return "unknown"


def stamped_revision() -> str | None:
    """The git commit this PEX was packaged from, or None when it runs from the sources.

    ``pants package`` stamps it: each service's pex_binary depends on ``flotilla_kit:build-stamp``
    (a ``vcs_version`` target, setuptools_scm's version of the checkout, e.g. ``0.1.dev42+g1a2b3c4``
    or ``...+g1a2b3c4.d20261129`` for a tree with uncommitted changes). Only PEX files carry it:
    tests and sources never depend on it, so a commit does not invalidate every test's cache.
    """
    try:
        stamp = importlib.import_module("flotilla_kit.build_stamp")
    except ImportError:
        return None
    match = _COMMIT.search(str(getattr(stamp, "SCM_VERSION", "")))
    if match is None:
        return None
    return match["commit"] + ("-dirty" if match["dirty"] else "")


def lib_versions() -> dict[str, str]:
    """Versions of the flotilla libs and service clients (packages with a VERSION file) in this process."""
    names = sorted(
        m.name
        for m in pkgutil.iter_modules()
        if m.ispkg and (m.name.startswith("flotilla_") or m.name.endswith("_client"))
    )
    found = {name: read_version(name) for name in names}
    return {name: version for name, version in found.items() if version != "unknown"}


def runtime_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
