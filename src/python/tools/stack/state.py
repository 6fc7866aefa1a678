"""The state file of a running stack (``<data dir>/stack.json``) and the lock that makes it single.

``up`` holds an exclusive ``flock`` on ``<data dir>/stack.lock`` for as long as it runs, so a second
``up`` on the same data dir is refused even when both start at once; the lock goes with the process,
however it dies. ``down`` and ``status`` read the state file for the pids and ports.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec

STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"


class Instance(msgspec.Struct, kw_only=True):
    service: str  # "redis", "postgres" and "gateway" are instances too
    instance: str
    port: int
    pid: int
    log: str
    internal_port: int = 0  # where /info is served, when not on the public port


class PostgresInfo(msgspec.Struct, kw_only=True):
    """What ``down`` needs to stop the server with ``pg_ctl`` when the supervisor is gone."""

    bindir: str
    directory: str  # the cluster is in directory/data; under the data dir, or where its link points
    user: str  # the account it runs as ("" when it is ours)
    version: str = "-"


class StackState(msgspec.Struct, kw_only=True):
    supervisor_pid: int
    phase: str  # starting | running | stopping
    gateway_url: str = ""
    console_url: str = ""
    token_command: str = ""
    instances: list[Instance] = msgspec.field(default_factory=list)
    postgres: PostgresInfo | None = None  # with --postgres


def read_state(data_dir: Path) -> StackState | None:
    path = data_dir / STATE_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=StackState)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def write_state(data_dir: Path, state: StackState) -> None:
    """Replace the state file atomically: a reader never sees half of it."""
    path = data_dir / STATE_FILE
    partial = path.with_suffix(".json.tmp")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(state)))
    os.replace(partial, path)


def remove_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running any more.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


@dataclass
class StackLock:
    """Held by the ``up`` that owns ``data_dir``; ``acquire`` is False when another ``up`` holds it."""

    data_dir: Path
    _file: IO[str] | None = field(default=None, repr=False)

    def acquire(self) -> bool:
        lock = open(self.data_dir / LOCK_FILE, "a")  # held open for the life of `up`
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self._file = lock
        return True

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
