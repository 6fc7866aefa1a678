"""``release check | bump | snapshot``: contract snapshots and versions of the shared libraries.

    release check [<lib> ...] [--json]      compare the models now with the newest snapshot; exit 1 on a
                                            breaking change unless VERSION's major is past the snapshot's
    release bump <lib> major|minor|patch [--message TEXT]
                                            write VERSION, a CHANGELOG.md entry and the new snapshot; print
                                            the services to rebuild and the deploy order per changed event
    release snapshot [<lib> ...]            write the snapshot of each lib's current version
    release asyncapi [--check] [--output PATH]
                                            write docs/asyncapi.json, the platform's AsyncAPI 3.0 document
                                            (streams, events, groups); --check: exit 1 naming what is stale

Run it in the repository root (``./pants run src/python/tools/release:release -- check``); ``--root`` points
elsewhere. Exit codes: 0 ok, 1 a check failed or Pants failed, 2 bad use or a bump too small.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from release.versions import PARTS, Part, ReleaseError
from release.workflow import (
    BumpResult,
    BumpTooSmall,
    DependentsError,
    LibReport,
    Workspace,
    bump,
    check_lib,
    write_snapshot,
)


def find_root(start: Path) -> Path:
    """The nearest folder up from ``start`` holding pants.toml (the build root), else ``start``."""
    for folder in (start, *start.parents):
        if (folder / "pants.toml").is_file():
            return folder
    return start


def path_argument(value: str) -> Path:
    """An argparse type: a path, refusing the empty string (which ``Path`` would read as the current folder)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path; name one")
    return Path(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="release", description="Contract snapshots and versions of the libs.")
    parser.add_argument(
        "--root", type=path_argument, help="repository root (default: the nearest folder with pants.toml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="classify the contract changes since the newest snapshot")
    check.add_argument("libs", nargs="*", help="libs to check (default: flotilla_contracts and every *_client)")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    bump_cmd = commands.add_parser("bump", help="bump a lib's version, changelog and snapshot")
    bump_cmd.add_argument("lib")
    bump_cmd.add_argument("part", choices=PARTS)
    bump_cmd.add_argument("--message", "-m", help="what changed, for the changelog")
    snapshot = commands.add_parser("snapshot", help="write the snapshot of each lib's current version")
    snapshot.add_argument("libs", nargs="*", help="libs (default: flotilla_contracts and every *_client)")
    asyncapi_cmd = commands.add_parser("asyncapi", help="write the platform's AsyncAPI document (docs/asyncapi.json)")
    asyncapi_cmd.add_argument("--check", action="store_true", help="compare the committed document with the code")
    asyncapi_cmd.add_argument("--output", type=path_argument, help="the document's path (default: docs/asyncapi.json)")
    return parser


def main(argv: Sequence[str] | None = None, *, workspace: Workspace | None = None) -> int:
    """Run one command; returns the exit code (errors are printed, never raised)."""
    args = build_parser().parse_args(argv)
    if args.root is not None and not args.root.is_dir():
        problem = "not a directory" if args.root.exists() else "no such directory"
        print(f"release: --root {args.root}: {problem}", file=sys.stderr)
        return 2
    ws = workspace or Workspace(root=(args.root or find_root(Path.cwd())).resolve())
    try:
        if args.command == "check":
            return _check(ws, args.libs, as_json=args.json)
        if args.command == "bump":
            return _bump(ws, args.lib, args.part, args.message)
        if args.command == "asyncapi":
            from release import asyncapi  # imports the streams and discovery libs: only for this command

            return asyncapi.run(ws.root, args.output, check=args.check)
        return _snapshot(ws, args.libs)
    except BumpTooSmall as exc:
        print(f"release: refused: {exc}", file=sys.stderr)
        return 2
    except DependentsError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 1
    except ReleaseError as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2


def _check(ws: Workspace, libs: Sequence[str], *, as_json: bool) -> int:
    reports: list[LibReport] = [check_lib(ws, lib) for lib in (libs or ws.contract_libs())]
    ok = all(r.ok for r in reports)
    if as_json:
        print(json.dumps({"ok": ok, "libs": [r.as_json() for r in reports]}, indent=2, sort_keys=True))
    else:
        for report in reports:
            for change in report.changes:
                print(change.line())
        for report in reports:
            print(report.summary())
        print("check: ok" if ok else "check: FAIL")
    return 0 if ok else 1


def _bump(ws: Workspace, lib: str, part: Part, message: str | None) -> int:
    result = bump(ws, lib, part, message)
    print(render_bump(ws.root, result))
    return 0


def render_bump(root: Path, result: BumpResult) -> str:
    """What a bump did and what to do next, for people."""
    lines = [f"{result.lib} {result.old} -> {result.new}"]
    lines.append("wrote: " + ", ".join(_relative(root, p) for p in result.written))
    if result.changes:
        lines.append("contract changes:")
        lines += [f"  {c.line()}" for c in result.changes]
    else:
        lines.append("contract changes: none")
    services = ", ".join(result.services) or "none"
    lines.append(f"rebuild and redeploy (their PEX contains {result.lib}): {services}")
    if result.libs:
        lines.append(f"libs depending on {result.lib} (their wheels require it): {', '.join(result.libs)}")
    if result.plans:
        lines.append("deploy order per changed event:")
        for plan in result.plans:
            lines.append(f"  {plan.tag} ({plan.event}): {plan.order}")
    return "\n".join(lines)


def _snapshot(ws: Workspace, libs: Sequence[str]) -> int:
    for lib in libs or ws.contract_libs():
        path = write_snapshot(ws, lib)
        if path is None:
            print(f"{lib}: no models of its own: nothing to snapshot")
        else:
            print(f"{lib}: wrote {_relative(ws.root, path)}")
    return 0


def _relative(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
