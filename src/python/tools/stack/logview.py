"""The services' logs as a person reads them: one line each, prefixed and coloured by instance.

Services log JSON lines (flotilla_kit.logs); they become ``time level logger: msg``, with the
extra fields after the message and a traceback below it. Anything else is shown as it is.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import msgspec

_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93", "95", "92", "94")
_LEVEL_COLOURS = {"WARNING": "33", "ERROR": "31", "CRITICAL": "31"}
# Fields every JSON line has, shown in the line's head rather than as key=value.
_HEAD = ("ts", "level", "service", "logger", "msg", "exc")
_decoder = msgspec.json.Decoder(dict[str, Any])


def readable(line: str, *, colour: bool = False) -> str:
    """One log line, JSON or not, as ``HH:MM:SS.mmm LEVEL logger: msg key=value ...``."""
    line = line.rstrip("\n")
    if not line.startswith("{"):
        return line
    try:
        entry = _decoder.decode(line)
    except msgspec.DecodeError:
        return line
    if "msg" not in entry:
        return line
    ts = str(entry.get("ts", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    level = str(entry.get("level", ""))
    shown_level = f"{level:<7}"
    if colour and level in _LEVEL_COLOURS:
        shown_level = f"\x1b[{_LEVEL_COLOURS[level]}m{shown_level}\x1b[0m"
    extras = " ".join(f"{key}={value}" for key, value in entry.items() if key not in _HEAD)
    text = f"{clock} {shown_level} {entry.get('logger', '')}: {entry['msg']}" + (f"  {extras}" if extras else "")
    if entry.get("exc"):
        text += "\n" + str(entry["exc"]).rstrip("\n")
    return text


def last_lines(log: Path, count: int = 20) -> list[str]:
    """The last ``count`` lines of a log file, readable."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [readable(line) for line in lines[-count:]]


class LogFollower:
    """Follows log files (as ``tail -f`` does) and prints their lines, prefixed by instance name."""

    def __init__(self, logs: Sequence[tuple[str, Path]], out: TextIO = sys.stdout, colour: bool | None = None) -> None:
        self.logs = list(logs)
        self.out = out
        self.colour = out.isatty() if colour is None else colour
        self.width = max((len(name) for name, _ in self.logs), default=0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="log follower", daemon=True)
        self._print_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _prefix(self, index: int, name: str) -> str:
        prefix = f"{name:<{self.width}} |"
        return f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{prefix}\x1b[0m" if self.colour else prefix

    def _follow(self) -> None:
        files: dict[int, TextIO] = {}
        partial: dict[int, str] = {}
        try:
            while not self._stop.is_set():
                quiet = True
                for index, (name, path) in enumerate(self.logs):
                    if index not in files:
                        try:
                            files[index] = open(path, errors="replace")  # closed below
                        except FileNotFoundError:
                            continue
                    chunk = files[index].read()
                    if not chunk:
                        continue
                    quiet = False
                    lines = (partial.pop(index, "") + chunk).split("\n")
                    if lines[-1]:
                        partial[index] = lines[-1]  # a line still being written
                    self._print(index, name, lines[:-1])
                if quiet:
                    time.sleep(0.1)
        finally:
            for file in files.values():
                file.close()

    def _print(self, index: int, name: str, lines: list[str]) -> None:
        prefix = self._prefix(index, name)
        with self._print_lock:
            for line in lines:
                if line.strip():
                    for shown in readable(line, colour=self.colour).split("\n"):
                        self.out.write(f"{prefix} {shown}\n")
            self.out.flush()


def print_logs(logs: Sequence[tuple[str, Path]], out: TextIO = sys.stdout, colour: bool | None = None) -> None:
    """Every line of these log files as it is now, readable and prefixed by instance name, file by file."""
    follower = LogFollower(logs, out, colour)
    for index, (name, path) in enumerate(follower.logs):
        try:
            text = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
        follower._print(index, name, text.split("\n"))
