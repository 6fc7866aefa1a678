"""Running wrk (Debian package `wrk`) and reading its report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
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


def run_wrk(
    url: str,
    conns: int,
    duration: str,
    *,
    header: str | None = None,
    script: str | None = None,
    env: dict[str, str] | None = None,
) -> WrkResult:
    """One wrk run with one thread (the load generator shares the machine with the servers)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}", "--latency", *(["-H", header] if header else [])]
    cmd += [*(["-s", script] if script else []), url]
    output = subprocess.run(cmd, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})})
    return parse_wrk(output.stdout)


# wrk is closed-loop: a connection sends its next request as soon as the last one is answered, so
# its load is always "as fast as possible". For latency at a given rate, each connection first
# waits a random time (uniform, mean = connections / rate), which spreads the requests like a
# Poisson stream at about that rate whatever the latency (slightly below it: the latency adds to
# each cycle, which is why many connections, each waiting long, are used).
_PACED_SCRIPT = """
local mean = tonumber(os.getenv("WRK_MEAN_DELAY_MS"))
function delay() return math.random(0, math.floor(2 * mean)) end
"""


def run_wrk_paced(url: str, rate: float, duration: str, *, conns: int = 16) -> WrkResult:
    """wrk at about ``rate`` requests per second in all (see above); the result says the rate reached."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_PACED_SCRIPT)
        script.flush()
        mean_delay_ms = conns * 1000 / rate
        return run_wrk(url, conns, duration, script=script.name, env={"WRK_MEAN_DELAY_MS": f"{mean_delay_ms:.3f}"})
