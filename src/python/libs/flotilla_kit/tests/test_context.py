from flotilla_http.context import TraceContext, accept_request_id, new_trace, parse_traceparent


def test_a_valid_traceparent_is_parsed():
    trace = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert trace == TraceContext("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01")


def test_invalid_traceparents_start_a_new_trace():
    for value in (
        None,
        "",
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
    ):
        assert parse_traceparent(value) is None


def test_a_child_span_keeps_the_trace_and_gets_a_new_span_id():
    parent = new_trace()
    child = parent.child()
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id
    assert child.traceparent == f"00-{parent.trace_id}-{child.span_id}-01"


def test_sane_request_ids_are_kept_and_others_replaced():
    assert accept_request_id("req-123.abc:9") == "req-123.abc:9"
    for bad in (None, "", "has space", "x" * 129, "newline\n"):
        replaced = accept_request_id(bad)
        assert replaced != bad and len(replaced) == 32
