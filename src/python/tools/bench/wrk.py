"""Running wrk (Debian package `wrk`) and reading its report."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0


def _to_ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not found:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return float(found.group(1)) * _UNITS_MS[found.group(2)]


def parse_wrk(out: str) -> WrkResult:
    """Requests/s, p50, p99 and errors (socket errors plus non-2xx/3xx answers) of a --latency report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(rps, _to_ms(pct["50"]), _to_ms(pct["99"]), errors)


def run_wrk(url: str, conns: int, duration: str, *, header: str | None = None) -> WrkResult:
    """One wrk run with one thread (the load generator shares the machine with the servers)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", *(["-H", header] if header else []), url]
    return parse_wrk(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
