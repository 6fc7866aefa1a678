"""check, bump and snapshot over a repository's libs; what reads the code or runs Pants is injected."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from release import changelog, schemas
from release.compat import BACKWARD, FORWARD, Change, compare, contained_models, needed_bump
from release.schemas import Document
from release.usage import EventUsage, find_usage
from release.versions import Part, ReleaseError, Version, newest_snapshot, read_version, snapshot_path, write_version

LIBS_DIR = Path("src/python/libs")
SERVICES_DIR = Path("src/python/services")
CONTRACTS_LIB = "flotilla_contracts"


class DependentsError(ReleaseError):
    """Pants could not list a lib's dependents."""


def pants_dependents(root: Path, lib: str) -> list[str]:
    """Addresses that depend on the lib, transitively, from Pants; raises DependentsError when Pants fails."""
    command = ["./pants", "--concurrent", "dependents", "--transitive", f"{LIBS_DIR.as_posix()}/{lib}::"]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DependentsError(f"cannot run {' '.join(command)} in {root}: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise DependentsError(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


@dataclass
class Workspace:
    """A repository to release from. ``collect`` reads a lib's models now (imports it);
    ``dependents`` lists the addresses depending on a lib (Pants in real use, a stub in tests)."""

    root: Path
    collect: Callable[[str], Document] = schemas.current_document
    dependents: Callable[[Path, str], list[str]] = pants_dependents
    today: Callable[[], date] = date.today

    def lib_dir(self, lib: str) -> Path:
        path = self.root / LIBS_DIR / lib
        if not (path / "VERSION").is_file():
            known = ", ".join(self.libs()) or "none"
            raise ReleaseError(f"unknown lib {lib!r}: no {LIBS_DIR / lib / 'VERSION'} (libs: {known})")
        return path

    def libs(self) -> list[str]:
        base = self.root / LIBS_DIR
        return sorted(p.parent.name for p in base.glob("*/VERSION")) if base.is_dir() else []

    def contract_libs(self) -> list[str]:
        """Libs whose models are contracts: flotilla_contracts, every ``*_client``, and any lib with snapshots."""
        return [lib for lib in self.libs() if is_contract_lib(self.root / LIBS_DIR / lib)]


def is_contract_lib(lib_dir: Path) -> bool:
    name = lib_dir.name
    return name == CONTRACTS_LIB or name.endswith("_client") or (lib_dir / "schemas").is_dir()


@dataclass
class LibReport:
    """The result of ``check`` for one lib."""

    lib: str
    version: Version
    snapshot: Version | None
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = True

    @property
    def needed(self) -> Part | None:
        return needed_bump(self.changes)

    @property
    def required_version(self) -> Version | None:
        base = self.snapshot or self.version
        return base.bumped(self.needed) if self.needed else None

    def summary(self) -> str:
        head = f"{self.lib} {self.version} (snapshot {self.snapshot or 'none'})"
        if not self.changes:
            return f"{head}: no contract change{'; ' + '; '.join(self.notes) if self.notes else ''}" + (
                "" if self.ok else " -> FAIL"
            )
        breaking = sum(c.breaking for c in self.changes)
        counts = f"{breaking} breaking, {len(self.changes) - breaking} compatible"
        verdict = "ok" if self.ok else "FAIL: breaking changes need a major bump (release bump " + self.lib + " major)"
        return f"{head}: {counts} -> needs a {self.needed} bump (to {self.required_version} or later); {verdict}"

    def as_json(self) -> dict[str, Any]:
        return {
            "lib": self.lib,
            "version": str(self.version),
            "snapshot": str(self.snapshot) if self.snapshot else None,
            "needed": self.needed,
            "required_version": str(self.required_version) if self.required_version else None,
            "ok": self.ok,
            "notes": self.notes,
            "changes": [c.as_json() for c in self.changes],
        }


def check_lib(ws: Workspace, lib: str) -> LibReport:
    """Compare the lib's models now with its newest snapshot. Not ok when a change breaks and the
    major version in VERSION is not already past the snapshot's (CI fails on it)."""
    lib_dir = ws.lib_dir(lib)
    version = read_version(lib_dir)
    snapshot = newest_snapshot(lib_dir)
    report = LibReport(lib, version, snapshot)
    if not is_contract_lib(lib_dir):
        report.notes.append("not a contract lib (only flotilla_contracts and *_client libs keep snapshots)")
        return report
    current = ws.collect(lib)
    if snapshot is None:
        if schemas.has_models(current):
            report.ok = False
            report.notes.append(f"no snapshot yet: write one with `release snapshot {lib}`")
        else:
            report.notes.append(f"no models of its own (it re-uses {CONTRACTS_LIB}'s): nothing to snapshot")
        return report
    if version < snapshot:
        report.ok = False
        report.notes.append(f"VERSION {version} is older than the newest snapshot {snapshot}")
    report.changes = compare(schemas.load(snapshot_path(lib_dir, snapshot)), current)
    if any(c.breaking for c in report.changes) and not version.major > snapshot.major:
        report.ok = False
    return report


def write_snapshot(ws: Workspace, lib: str, *, document: Document | None = None) -> Path | None:
    """Write the snapshot of the lib's current version; None when the lib has no models of its own.
    Raises ReleaseError when a different snapshot of that version exists (a release never changes)."""
    lib_dir = ws.lib_dir(lib)
    version = read_version(lib_dir)
    current = document if document is not None else ws.collect(lib)
    if not schemas.has_models(current):
        return None
    path = snapshot_path(lib_dir, version)
    text = schemas.dumps({**current, "version": str(version)})
    if path.exists() and path.read_text() != text:
        raise ReleaseError(
            f"{path} exists and differs from the models now: {lib} {version} is released; bump the version instead"
        )
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class EventPlan:
    """How to roll out one changed event: who produces it, who consumes it, in which order."""

    event: str
    tag: str
    breaks: frozenset[str]
    producers: list[str]
    consumers: list[str]
    order: str


@dataclass
class BumpResult:
    lib: str
    old: Version
    new: Version
    changes: list[Change]
    written: list[Path]
    services: list[str]
    libs: list[str]
    plans: list[EventPlan]


def bump(ws: Workspace, lib: str, part: Part, message: str | None = None) -> BumpResult:
    """Bump the lib's version by ``part``: writes VERSION, a CHANGELOG.md entry and the new snapshot.

    Raises BumpTooSmall (before writing anything) when the contract changes need a bigger bump, and
    DependentsError when the dependents cannot be listed (also before writing).
    """
    lib_dir = ws.lib_dir(lib)
    old = read_version(lib_dir)
    new = old.bumped(part)
    contract = is_contract_lib(lib_dir)
    snapshot = newest_snapshot(lib_dir) if contract else None
    current: Document | None = ws.collect(lib) if contract else None
    previous = schemas.load(snapshot_path(lib_dir, snapshot)) if snapshot else None
    changes = compare(previous, current) if previous is not None and current is not None else []
    needed = needed_bump(changes)
    base = snapshot or old
    if needed and new < base.bumped(needed):
        raise BumpTooSmall(lib, part, old, new, needed, base.bumped(needed), changes)
    if snapshot_path(lib_dir, new).exists():
        raise ReleaseError(f"{snapshot_path(lib_dir, new)} exists already: {lib} {new} was released")
    addresses = ws.dependents(ws.root, lib)
    services, libs = split_dependents(ws.root, lib, addresses)

    write_version(lib_dir, new)
    written = [lib_dir / "VERSION"]
    log = lib_dir / "CHANGELOG.md"
    changelog.add_entry(log, changelog.entry(str(new), ws.today(), message, changes))
    written.append(log)
    if current is not None and schemas.has_models(current):
        path = write_snapshot(ws, lib, document=current)
        if path:
            written.append(path)
    plans = event_plans(ws.root, previous, current, changes) if previous is not None and current is not None else []
    return BumpResult(lib, old, new, changes, written, services, libs, plans)


class BumpTooSmall(ReleaseError):
    def __init__(
        self, lib: str, part: Part, old: Version, new: Version, needed: Part, required: Version, changes: list[Change]
    ) -> None:
        self.changes = changes
        self.needed = needed
        lines = [c.line() for c in changes if c.level == needed]
        super().__init__(
            f"{lib}: a {part} bump ({old} -> {new}) is too small: the contract changes need a {needed} bump"
            f" (to {required} or later):\n  " + "\n  ".join(lines)
        )


def split_dependents(root: Path, lib: str, addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    """(services whose PEX contains the lib, other libs depending on it) from Pants addresses.

    A service counts when one of its non-test targets depends on the lib and its folder declares a
    ``pex_binary``; test files depend on the lib without putting it in the PEX."""
    services: set[str] = set()
    libs: set[str] = set()
    for address in addresses:
        path = address.split(":", 1)[0].strip("/")
        parts = path.split("/")
        if len(parts) < 4:
            continue
        top, name, rest = "/".join(parts[:3]), parts[3], parts[4:]
        if "tests" in rest or any(p.startswith("test_") or p == "conftest.py" for p in rest):
            continue
        if top == SERVICES_DIR.as_posix():
            build = root / SERVICES_DIR / name / "BUILD"
            if build.is_file() and "pex_binary(" in build.read_text():
                services.add(name)
        elif top == LIBS_DIR.as_posix() and name != lib:
            libs.add(name)
    return sorted(services), sorted(libs)


def event_plans(root: Path, old: Document, new: Document, changes: Sequence[Change]) -> list[EventPlan]:
    """The deploy order for every event whose schema (or a model it contains) changed.

    - Nothing broken (FULL compatible): any order.
    - Forward broken only (old readers fail on new data, e.g. a widened enum, a field made nullable):
      consumers first, then producers.
    - Backward broken only (new readers fail on old data, e.g. a new required field, a narrowed enum,
      a tightened constraint): producers first; consumers only once the old events have drained
      (every group's lag and pending at zero, no replay of older entries planned).
    - Both broken (a changed type, a removed or renamed field, a changed tag): no rolling order is
      safe; publish a new event type beside the old one instead.
    """
    by_model: dict[str, list[Change]] = {}
    for change in changes:
        by_model.setdefault(change.model, []).append(change)
    events = {**old["events"], **new["events"]}
    modules = sorted({m["module"] for doc in (old, new) for n, m in doc["models"].items() if n in doc["events"]})
    usage = find_usage(root / SERVICES_DIR, events, modules, base=root)
    plans = []
    for name in sorted(events):
        doc = new if name in new["events"] else old
        reached = contained_models(doc, name)
        relevant = [c for model in sorted(reached) for c in by_model.get(model, [])]
        if not relevant:
            continue
        breaks = frozenset(b for c in relevant for b in c.breaks)
        used = usage.get(name, EventUsage())
        producers, consumers = sorted(used.producers), sorted(used.consumers)
        plans.append(
            EventPlan(
                name,
                events[name]["tag"],
                breaks,
                producers,
                consumers,
                deploy_order(breaks, name, producers, consumers),
            )
        )
    return plans


def deploy_order(breaks: frozenset[str], event: str, producers: Sequence[str], consumers: Sequence[str]) -> str:
    """The rule for one event, in words, naming the services."""
    p = ", ".join(producers) or "no producer found"
    c = ", ".join(consumers) or "no consumer found"
    if not breaks:
        return f"any order (FULL compatible): producers [{p}], consumers [{c}]"
    if breaks == {FORWARD}:
        return f"consumers first [{c}], then producers [{p}]: old consumers would fail on new events"
    if breaks == {BACKWARD}:
        return (
            f"producers first [{p}]; then consumers [{c}] once the old {event} events have drained"
            " (every group's lag and pending at 0): new consumers would fail on old events"
        )
    return (
        f"no safe order (breaks backward and forward): add a new event type (e.g. {event}V2) beside {event};"
        f" deploy consumers [{c}] handling both, then producers [{p}] publishing the new one; remove {event}"
        " once it has drained"
    )
