"""Semantic versions of the libs: one ``VERSION`` file per lib, one snapshot file per released version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, NamedTuple, get_args

Part = Literal["major", "minor", "patch"]
PARTS: tuple[Part, ...] = get_args(Part)
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class ReleaseError(Exception):
    """Bad use or a state the tool cannot work with; the CLI prints it and exits non-zero."""


class Version(NamedTuple):
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str, *, where: str = "version") -> Version:
        """Parse ``MAJOR.MINOR.PATCH``; raises ReleaseError naming the bad value and where it came from."""
        match = _SEMVER.match(text.strip())
        if match is None:
            raise ReleaseError(f"{where}: {text.strip()!r} is not a version MAJOR.MINOR.PATCH (e.g. 0.1.0)")
        return cls(*(int(group) for group in match.groups()))

    def bumped(self, part: Part) -> Version:
        if part == "major":
            return Version(self.major + 1, 0, 0)
        if part == "minor":
            return Version(self.major, self.minor + 1, 0)
        return Version(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def part_rank(part: Part | None) -> int:
    """Orders bumps: no bump < patch < minor < major."""
    return 0 if part is None else PARTS[::-1].index(part) + 1


def version_file(lib_dir: Path) -> Path:
    return lib_dir / "VERSION"


def read_version(lib_dir: Path) -> Version:
    """The lib's version from its one ``VERSION`` file; raises ReleaseError when missing or malformed."""
    path = version_file(lib_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ReleaseError(f"{path} does not exist: every lib keeps its version in one VERSION file") from None
    return Version.parse(text, where=str(path))


def write_version(lib_dir: Path, version: Version) -> None:
    version_file(lib_dir).write_text(f"{version}\n")


def schemas_dir(lib_dir: Path) -> Path:
    return lib_dir / "schemas"


def snapshot_path(lib_dir: Path, version: Version) -> Path:
    return schemas_dir(lib_dir) / f"{version}.json"


def snapshot_versions(lib_dir: Path) -> list[Version]:
    """Versions that have a snapshot, oldest first (files whose name is not a version are ignored)."""
    found = []
    for path in schemas_dir(lib_dir).glob("*.json"):
        if _SEMVER.match(path.stem):
            found.append(Version.parse(path.stem))
    return sorted(found)


def newest_snapshot(lib_dir: Path) -> Version | None:
    versions = snapshot_versions(lib_dir)
    return versions[-1] if versions else None
