"""An OTLP/HTTP endpoint that accepts every export and drops it, in a process of its own.

The traced benches export to it: the cost of a collector stays out of the measurement, as it runs
elsewhere in production, and so does reading the exports (in the measured process, the sink's
thread would take the interpreter lock from the code being measured).

Run:  python -m bench.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import sys
from collections.abc import Iterator

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess


class _DropSpans(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector serves the exporter

    def do_POST(self) -> None:  # the name http.server calls
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer()

    def do_GET(self) -> None:  # readiness, for whoever started it
        self._answer()

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """A sink process for the duration; yields its base URL (for OTEL_EXPORTER_OTLP_ENDPOINT)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)]
    sink = ServiceProcess(command, port=port, env={"PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        sink.wait_ready(timeout=30, path="/")
        yield sink.base_url
    finally:
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), _DropSpans)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
