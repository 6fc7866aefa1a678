"""Structured JSON logs: one JSON object per line, tagged with the service, request id and trace."""

from __future__ import annotations

import logging
import sys
import time
import traceback

import msgspec

from flotilla_http.context import request_id_var, trace_var

# Values msgspec cannot encode (an exception in `extra=`, say) are logged as their repr.
_encoder = msgspec.json.Encoder(enc_hook=repr)
# LogRecord attributes that are not user `extra=` fields.
# color_message (set by some servers) duplicates msg with terminal escapes.
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        trace = trace_var.get()
        if trace:
            entry["trace_id"] = trace.trace_id
            entry["span_id"] = trace.span_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info))
        return _encoder.encode(entry).decode()


def configure_logging(service: str, level: str = "INFO", *, json: bool = True) -> None:
    """Send all logs to stderr, as JSON lines or plain text, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if json:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Servers log through these; route them through our handler instead of their own.
    for name in ("granian", "litestar"):
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
