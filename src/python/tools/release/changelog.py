"""A lib's CHANGELOG.md, Keep-a-Changelog style: a ``# Changelog`` title, newest entry first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from release.compat import Change

TITLE = "# Changelog"
INTRO = (
    "All notable changes to this library. The format follows [Keep a Changelog](https://keepachangelog.com/),"
    " and versions follow [Semantic Versioning](https://semver.org/)."
)


def entry(version: str, day: date, message: str | None, changes: Sequence[Change]) -> str:
    """The Markdown of one release: the message, then the contract changes by kind."""
    lines = [f"## [{version}] - {day.isoformat()}", ""]
    if message:
        lines += [message.strip(), ""]
    sections: dict[str, list[str]] = {"Added": [], "Changed": [], "Removed": []}
    for change in changes:
        if "_ADDED" in change.rule:
            section = "Added"
        elif "_REMOVED" in change.rule:
            section = "Removed"
        else:
            section = "Changed"
        mark = f"**Breaking ({'+'.join(sorted(change.breaks))})**: " if change.breaking else ""
        sections[section].append(f"- {mark}`{change.where}`: {change.rule}: {change.detail}")
    for section, items in sections.items():
        if items:
            lines += [f"### {section}", "", *items, ""]
    if not message and not changes:
        lines += ["No contract changes.", ""]
    return "\n".join(lines)


def add_entry(path: Path, text: str) -> None:
    """Put ``text`` above the newest release (below the title and an ``[Unreleased]`` section);
    creates the file with a title when it is missing."""
    if not path.exists():
        path.write_text(f"{TITLE}\n\n{INTRO}\n\n{text.rstrip()}\n")
        return
    lines = path.read_text().splitlines()
    at = len(lines)
    for index, line in enumerate(lines):
        if line.startswith("## ") and "unreleased" not in line.lower():
            at = index
            break
    if not any(line.strip() == TITLE for line in lines):
        lines[:0] = [TITLE, ""]
        at += 2
    before = lines[:at]
    while before and not before[-1].strip():
        before.pop()
    after = lines[at:]
    merged = [*before, "", *text.rstrip().splitlines(), *([""] + after if after else [])]
    path.write_text("\n".join(merged).rstrip() + "\n")
