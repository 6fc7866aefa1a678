"""What the relay answers when a request ends before its answer started."""

import logging

from flotilla_http.errors import InvalidHeader, InvalidRequest, RequestBodyTimeout, UpstreamConnectError
from gateway.relay import problem_of

SCOPE = {"type": "http", "method": "GET", "path": "/api/catalog/products", "headers": []}


def test_a_request_the_client_refuses_to_write_is_a_400_with_the_clients_own_reason():
    header = problem_of(InvalidHeader("x y", "the name is not a token"), SCOPE)
    assert header.status == 400 and header.detail == "header 'x y': the name is not a token"
    path = problem_of(InvalidRequest("path must be percent-encoded, without spaces or controls: '/\\xe9'"), SCOPE)
    assert path.status == 400 and path.detail.startswith("path must be percent-encoded")


def test_any_other_value_error_is_a_500_logged_with_its_traceback_not_the_callers_fault(caplog):
    with caplog.at_level(logging.ERROR, logger="gateway.relay"):
        problem = problem_of(ValueError("a bug of ours"), SCOPE)
    assert problem.status == 500 and "bug" not in problem.detail
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_an_upstream_failure_keeps_its_status():
    assert problem_of(UpstreamConnectError("catalog", "cannot connect"), SCOPE).status == 503


def test_a_caller_body_too_slow_is_a_408_not_an_upstream_timeout():
    problem = problem_of(RequestBodyTimeout("catalog", "the request body did not arrive in time"), SCOPE)
    assert (problem.status, problem.type_name) == (408, "request-timeout")
