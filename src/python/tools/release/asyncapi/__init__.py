"""``release asyncapi [--check]``: the platform's AsyncAPI 3.0 document, ``docs/asyncapi.json``.

Written from the code (``document``), validated against the official AsyncAPI 3.0.0 schema
(``validation``) before it is written; ``--check`` compares the committed file with the code and
names every path that differs, for CI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from release.asyncapi.document import SERVICES_DIR, build_document
from release.asyncapi.validation import validate
from release.asyncapi.wiring import WiringError
from release.schemas import dumps

DOCUMENT_PATH = Path("docs/asyncapi.json")
REGENERATE = "./pants run src/python/tools/release:release -- asyncapi"
MAX_SHOWN = 25


def run(root: Path, output: Path | None = None, *, check: bool = False) -> int:
    """Write (or with ``check`` compare) the document; returns the exit code: 0 written or up to
    date, 1 stale, missing, invalid, or the services' wiring cannot be read, 2 bad use (a root that
    is no repository, an output that cannot be the file) or an I/O error; the message names the path."""
    path = root / (output or DOCUMENT_PATH)
    shown = _shown(root, path)
    refusal = _refusal(root, path, shown, writing=not check)
    if refusal:
        print(f"asyncapi: {refusal}", file=sys.stderr)
        return 2
    try:
        document = build_document(root)
    except WiringError as exc:
        print(f"asyncapi: {exc}", file=sys.stderr)
        return 1
    problems = validate(document)
    if problems:
        print("asyncapi: the generated document is not valid AsyncAPI 3.0.0:", file=sys.stderr)
        for problem in problems[:MAX_SHOWN]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    text = dumps(document)
    try:
        if check:
            return _check(path, shown, text, document)
        if path.is_file() and path.read_bytes() == text.encode():
            print(f"{shown}: up to date")
            return 0
        path.write_bytes(text.encode())
    except OSError as exc:
        print(f"asyncapi: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{len(document[key])} {key}" for key in ("channels", "operations"))
    print(f"wrote {shown} ({counts}, {len(document['components']['messages'])} messages)")
    return 0


def _refusal(root: Path, path: Path, shown: str, *, writing: bool) -> str | None:
    """Why ``root`` and ``path`` cannot be used (checked before the slow build), or None."""
    if not (root / SERVICES_DIR).is_dir():
        return f"{root} is not the repository root (no {SERVICES_DIR} in it): run it there or pass --root"
    if path.is_dir():
        return f"--output {shown}: is a directory; name the document's file"
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"--output {shown}: not a directory: {existing}"
    if writing and existing != path.parent:
        # Not created on the fly: a missing folder is far likelier a typo than a wish.
        return f"--output {shown}: no such directory: {path.parent}"
    return None


def _check(path: Path, shown: str, text: str, document: dict[str, Any]) -> int:
    if not path.is_file():
        print(f"asyncapi: {shown} is missing: write it with `{REGENERATE}`", file=sys.stderr)
        return 1
    committed_bytes = path.read_bytes()
    if committed_bytes == text.encode():
        print(f"{shown}: up to date")
        return 0
    try:
        committed = json.loads(committed_bytes.decode())
    except UnicodeDecodeError as exc:
        differences = [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]
    except ValueError as exc:
        differences = [f"not JSON: {exc}"]
    else:
        # Same content, other bytes: the file was edited or formatted by hand.
        differences = stale_paths(committed, document) or ["the same content, formatted differently"]
    print(f"asyncapi: {shown} is stale (regenerate it with `{REGENERATE}`):", file=sys.stderr)
    for difference in differences[:MAX_SHOWN]:
        print(f"  {difference}", file=sys.stderr)
    if len(differences) > MAX_SHOWN:
        print(f"  ... and {len(differences) - MAX_SHOWN} more", file=sys.stderr)
    return 1


def stale_paths(committed: Any, current: Any, where: str = "") -> list[str]:
    """Where ``committed`` differs from ``current``: ``added``, ``removed`` or ``changed`` per path."""
    if isinstance(committed, dict) and isinstance(current, dict):
        found = []
        for key in sorted(committed.keys() | current.keys()):
            path = f"{where}.{key}" if where else key
            if key not in current:
                found.append(f"removed: {path}")
            elif key not in committed:
                found.append(f"added: {path}")
            else:
                found += stale_paths(committed[key], current[key], path)
        return found
    if committed == current:
        return []
    return [f"changed: {where or 'the document'}"]


def _shown(root: Path, path: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
