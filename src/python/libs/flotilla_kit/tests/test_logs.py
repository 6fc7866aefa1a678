import json
import logging

from flotilla_http.context import TraceContext, request_id_var, trace_var
from flotilla_kit.logs import JsonFormatter


def _record(msg, *args, exc_info=None, **extra):
    record = logging.LogRecord("orders.api", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_a_log_line_is_one_json_object_with_request_and_trace_ids():
    request_token = request_id_var.set("req-1")
    trace_token = trace_var.set(TraceContext("a" * 32, "b" * 16))
    try:
        line = JsonFormatter("orders").format(_record("order %s placed", "o-1", order_total=1250))
    finally:
        request_id_var.reset(request_token)
        trace_var.reset(trace_token)
    entry = json.loads(line)
    assert entry["msg"] == "order o-1 placed"
    assert entry["level"] == "WARNING"
    assert entry["service"] == "orders"
    assert entry["request_id"] == "req-1"
    assert entry["trace_id"] == "a" * 32 and entry["span_id"] == "b" * 16
    assert entry["order_total"] == 1250
    assert entry["ts"].endswith("Z")


def test_exceptions_and_unencodable_extras_are_logged_not_lost():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed", exc_info=sys.exc_info(), thing=object())
    entry = json.loads(JsonFormatter("orders").format(record))
    assert "ValueError: boom" in entry["exc"]
    assert entry["thing"].startswith("<object object")
    assert "request_id" not in entry
