"""The HTTP contract the kit gives every service (flotilla_kit.contract), on a service of its own."""

import msgspec
import pytest
from litestar import Litestar, delete, get, post
from litestar.params import FromPath, JSONBody
from litestar.routes import HTTPRoute
from litestar.testing import TestClient

from flotilla_kit.app import create_service_app
from flotilla_kit.methods import LITESTAR_OPTIONS_HANDLER, options_answered_by_the_kit
from flotilla_kit.openapi import answers, problem_responses
from flotilla_kit.settings import ServiceSettings


class Note(msgspec.Struct):
    text: str


@answers({418: "The caller asked the wrong service."})
def teapot_guard(_connection, _handler) -> None:
    return None


@get("/notes/{note_id:int}")
async def read(note_id: FromPath[int]) -> Note:
    return Note(str(note_id))


# Registered on its own, as a second step for the same path: Litestar's OPTIONS handler forgot it.
@delete("/notes/{note_id:int}", guards=[teapot_guard], responses=problem_responses({409: "The note is locked."}))
async def remove(note_id: FromPath[int]) -> None:
    return None


@post("/notes")
async def write(data: JSONBody[Note]) -> Note:
    return data


@pytest.fixture
def client(tmp_path):
    settings = ServiceSettings(service_name="demo", database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db")
    with TestClient(create_service_app(settings, version="1", route_handlers=[read, remove, write])) as client:
        yield client


def test_options_and_405_list_every_method_of_a_path_registered_in_steps(client):
    assert client.options("/notes/1").headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert client.put("/notes/1").headers["allow"] == "DELETE, GET, HEAD, OPTIONS"
    assert client.options("/notes").headers["allow"] == "OPTIONS, POST"


def test_a_body_not_declared_as_json_is_415_for_any_service(client):
    response = client.post("/notes", content=b'{"text": "x"}', headers={"content-type": "text/csv"})
    assert response.status_code == 415 and response.headers["accept"] == "application/json"
    assert client.post("/notes", json={"text": "x"}).status_code == 201


def test_operations_document_the_kits_problems_their_guards_and_their_own(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert set(paths["/notes/{note_id}"]["delete"]["responses"]) == {"204", "400", "404", "409", "418"}
    assert set(paths["/notes/{note_id}"]["get"]["responses"]) == {"200", "400", "404"}
    assert set(paths["/notes"]["post"]["responses"]) == {"201", "400", "413", "415"}


def test_the_options_handler_the_kit_replaces_is_litestars_own_by_the_name_it_looks_for():
    # replace_options_handler recognises Litestar's handler by a private name: a Litestar that
    # renames it would leave every OPTIONS answer to Litestar, silently. This says so first.
    app = Litestar(route_handlers=[read, write])
    routes = [route for route in app.routes if isinstance(route, HTTPRoute)]
    assert routes
    for route in routes:
        handler, _ = route.route_handler_map["OPTIONS"]
        assert handler.fn.__qualname__ == LITESTAR_OPTIONS_HANDLER, route.path


def test_every_path_of_a_kit_app_answers_options_with_the_kits_handler(client):
    routes = [route for route in client.app.routes if isinstance(route, HTTPRoute) and route.path.startswith("/notes")]
    assert len(routes) == 2
    assert all(options_answered_by_the_kit(route) for route in routes)
