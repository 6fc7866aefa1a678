"""Versions of what runs inside this process, for /info and the CLI's --version."""

from __future__ import annotations

import pkgutil
import platform
from importlib import metadata, resources

# Third-party distributions worth reporting when someone asks "what exactly is deployed?".
_DISTRIBUTIONS = ("litestar", "msgspec", "sqlalchemy", "granian", "redis")


def read_version(package: str) -> str:
    """The version in ``package``'s VERSION file (how every flotilla lib keeps its version)."""
    try:
        return (resources.files(package) / "VERSION").read_text().strip()
    except (FileNotFoundError, ModuleNotFoundError):
        return "unknown"


def lib_versions() -> dict[str, str]:
    """Versions of the flotilla libs and service clients (packages with a VERSION file) in this process."""
    names = sorted(
        m.name for m in pkgutil.iter_modules() if m.name.startswith("flotilla_") or m.name.endswith("_client")
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
