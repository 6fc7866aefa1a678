"""Fuzz a running service's API from its own OpenAPI document (schemathesis), for tests.

For every operation in the document, schemathesis generates requests, schema-valid and
schema-violating alike, sends them over HTTP, and checks each answer against the document: no 5xx,
a documented status, a documented content type, a body that matches the documented schema, and
problem documents whose ``status`` is the answer's.

The run is bounded and deterministic: a fixed number of examples per operation, a derandomized
Hypothesis, no deadline. ``schemathesis.pytest.from_fixture`` is not used: schemathesis 4.32
renames the pytest node through ``Node._nodeid``, which pytest 9.2 no longer has; Hypothesis drives
each operation's strategy directly instead, one subtest per operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SEED = 20240611


def problem_status_matches(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    """An error's body is a problem document whose ``status`` is the answer's (the schema cannot say so)."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and body.get("status") == response.status_code, f"not this problem: {body!r}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    problem_status_matches,
]


def load_document(url: str) -> schemathesis.BaseSchema:
    """The OpenAPI document at ``url``, with an explicit config (a schemathesis.toml nearby must not change runs)."""
    config = schemathesis.Config.from_dict({"seed": SEED})
    return schemathesis.openapi.from_url(url, config=config, timeout=10)


def fuzz_every_operation(
    document: schemathesis.BaseSchema,
    *,
    base_url: str,
    headers: Mapping[str, str],
    subtests: Any,
    max_examples: int = 25,
) -> None:
    """Send generated requests to every operation of ``document`` at ``base_url``; a failing check fails its subtest."""
    bounded = settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        # Negative cases are filtered heavily for some operations (a free-form string path
        # parameter has little to violate); that is expected, not a problem with the test.
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow, HealthCheck.data_too_large],
        report_multiple_bugs=True,
    )
    for result in document.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the document has an operation schemathesis cannot read: {result.err()}")
        operation = result.ok()
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

        @bounded
        @given(case=strategy)
        def requests_to_operation(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, headers=dict(headers), checks=CHECKS, timeout=10)

        with subtests.test(operation=operation.label):
            requests_to_operation()
