"""The request-context layer's handling of request bodies, driven over raw ASGI."""

import pytest

from flotilla_kit.metrics import ServiceMetrics
from flotilla_kit.middleware import IncompleteRequestBody, RequestContextMiddleware

SCOPE = {"type": "http", "method": "POST", "path": "/notes", "headers": [(b"transfer-encoding", b"chunked")]}


def _server(*messages):
    """A server's receive that hands over ``messages`` in order, then disconnects for good."""
    queue = list(messages)

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def _ignore(message):
    pass


async def test_a_body_cut_short_before_the_answer_raises_the_callers_fault():
    received = []

    async def app(scope, receive, send):
        while True:
            received.append(await receive())

    layer = RequestContextMiddleware(app, ServiceMetrics("demo"))
    with pytest.raises(IncompleteRequestBody) as raised:
        await layer(SCOPE, _server({"type": "http.request", "body": b"{", "more_body": True}), _ignore)
    assert raised.value.status == 400
    assert "after 1 bytes" in raised.value.detail
    assert received == [{"type": "http.request", "body": b"{", "more_body": True}]


async def test_a_disconnect_after_the_body_or_the_answer_reaches_the_app_as_usual():
    seen = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        seen.append(await receive())  # a streaming answer listens for the caller leaving

    layer = RequestContextMiddleware(app, ServiceMetrics("demo"))
    await layer(SCOPE, _server(), _ignore)
    assert seen == [{"type": "http.disconnect"}]

    async def reads_then_waits(scope, receive, send):
        seen[:] = [await receive(), await receive()]

    layer = RequestContextMiddleware(reads_then_waits, ServiceMetrics("demo"))
    await layer(SCOPE, _server({"type": "http.request", "body": b"{}", "more_body": False}), _ignore)
    assert seen[1] == {"type": "http.disconnect"}
