"""The problem answers each operation documents in its service's OpenAPI document.

Every error a service answers is an ``application/problem+json`` document (flotilla_kit.problems),
described by one components schema, ``ProblemDetails``. The statuses that the kit itself answers
are added to each operation from ``STANDARD_PROBLEMS``, by what the operation takes (parameters,
a body); guards declare theirs with ``answers``; a handler declares its own (404 for an unknown id,
409, 422) with ``problem_responses``. All of it happens once, when a route is registered: the
document costs nothing per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

from flotilla_kit.problems import PROBLEM_MEDIA_TYPE, ProblemDetails

PROBLEM_SCHEMA_NAME = ProblemDetails.__name__
"""The components schema of every problem answer (the gateway merges the services' into one)."""

_ANSWERS_ATTRIBUTE = "__flotilla_problems__"
_Guard = TypeVar("_Guard", bound=Callable[..., Any])


@dataclass(frozen=True)
class OperationShape:
    """What an operation takes, which decides the problems the kit can answer on it."""

    path_parameters: bool
    json_body: bool
    raw_body: bool
    dependencies: bool  # injected ones, such as the database


@dataclass(frozen=True)
class StandardProblem:
    status: int
    description: str
    applies: Callable[[OperationShape], bool]


STANDARD_PROBLEMS: tuple[StandardProblem, ...] = (
    StandardProblem(
        400,
        "The request is malformed, or a parameter or the body breaks the schema (`errors` names the fields).",
        lambda _: True,  # besides validation: bad framing or encoding of any request
    ),
    StandardProblem(
        404, "The path names nothing: a path parameter that matches no resource.", lambda op: op.path_parameters
    ),
    StandardProblem(413, "The request body is over the service's size limit.", lambda op: op.json_body or op.raw_body),
    StandardProblem(
        415,
        "The body is not declared as JSON in UTF-8 (`Accept` says what is), or has a content coding.",
        lambda op: op.json_body,
    ),
    StandardProblem(
        503,
        "A dependency of the service (its database) cannot be reached; `Retry-After` says when to retry.",
        lambda op: op.dependencies,
    ),
)


def problem_response(description: str) -> ResponseSpec:
    """A documented problem answer: ``description`` with the ProblemDetails schema, as application/problem+json."""
    return ResponseSpec(
        data_container=ProblemDetails, description=description, media_type=PROBLEM_MEDIA_TYPE, generate_examples=False
    )


def problem_responses(problems: Mapping[int, str]) -> dict[int, ResponseSpec]:
    """``responses=`` for a route handler that answers these problems itself (status -> when)."""
    return {status: problem_response(description) for status, description in problems.items()}


def answers(problems: Mapping[int, str]) -> Callable[[_Guard], _Guard]:
    """Declare the problems a guard answers (status -> when), documented on every operation it guards."""

    def declare(guard: _Guard) -> _Guard:
        setattr(guard, _ANSWERS_ATTRIBUTE, dict(problems))
        return guard

    return declare


def document_problems(route: HTTPRoute) -> None:
    """Add the problems the kit and the guards answer to each documented handler of ``route``.

    A handler's own ``responses`` win for the same status. Idempotent: Litestar registers a
    handler again when another handler joins its path.
    """
    for handler, kwargs_model in route.route_handler_map.values():
        if not handler.resolve_include_in_schema():
            continue
        reserved = kwargs_model.expected_reserved_kwargs
        shape = OperationShape(
            path_parameters=bool(kwargs_model.expected_path_params),
            json_body="data" in reserved
            and not (kwargs_model.expected_form_data or kwargs_model.expected_msgpack_data),
            raw_body="body" in reserved or "data" in reserved,
            dependencies=bool(kwargs_model.dependency_batches),
        )
        standard = {p.status: p.description for p in STANDARD_PROBLEMS if p.applies(shape)}
        responses = {**problem_responses({**standard, **_guard_problems(handler)}), **(handler.responses or {})}
        handler.responses = dict(sorted(responses.items()))


def _guard_problems(handler: HTTPRouteHandler) -> dict[int, str]:
    problems: dict[int, str] = {}
    for layer in handler.ownership_layers:
        for guard in getattr(layer, "guards", None) or ():
            problems.update(getattr(guard, _ANSWERS_ATTRIBUTE, {}))
    return problems
