"""CPU time of process trees, from /proc: what a server costs per request or per order.

On a shared machine the share of the cores a server gets moves its throughput from run to run;
the CPU it spends per unit of work moves much less, so the benches report both.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcessTrees:
    """A snapshot of every process's parent and CPU seconds so far (user + system, all threads)."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            pid = int(stat.parent.name)
            self.cpu[pid] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
            self.children.setdefault(int(fields[1]), []).append(pid)

    def tree(self, pid: int) -> float:
        """CPU seconds of ``pid`` and its descendants (a server runs its app in a child process)."""
        return self.cpu.get(pid, 0.0) + sum(self.tree(child) for child in self.children.get(pid, []))
