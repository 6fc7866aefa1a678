"""The caller rules every service shares: who is calling (401 without anyone), roles (403), and whose items
a caller may see (an admin anyone's, a customer only their own)."""

from typing import Any

import pytest
from litestar import Request, get
from litestar.testing import create_test_client

from flotilla_kit.identity import caller_id, caller_roles, require_caller, require_role, visible_customer
from flotilla_kit.problems import Forbidden, exception_handlers

ADMIN = {"x-caller-id": "ops", "x-caller-roles": "admin"}
ALICE = {"x-caller-id": "alice", "x-caller-roles": "customer"}


@get("/who", sync_to_thread=False)
def who(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"id": caller_id(request), "roles": sorted(caller_roles(request))}


@get("/notes", sync_to_thread=False)
def notes(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {"id": caller_id(request, refusal="reading notes needs an authenticated caller")}


@get("/short", guards=[require_caller(max_length=5)], sync_to_thread=False)
def short() -> None:
    return None


@get("/admin", guards=[require_role("admin")], sync_to_thread=False)
def admin_only() -> None:
    return None


@pytest.fixture(scope="module")
def client():
    with create_test_client([who, notes, short, admin_only], exception_handlers=exception_handlers) as client:
        yield client


def _problem(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return body


def test_the_caller_is_the_one_the_gateway_names_with_their_roles(client):
    response = client.get("/who", headers={"x-caller-id": "alice", "x-caller-roles": " customer, tester ,"})
    assert response.json() == {"id": "alice", "roles": ["customer", "tester"]}


@pytest.mark.parametrize("headers", [{}, {"x-caller-id": ""}, {"x-caller-roles": "admin"}])
def test_without_an_authenticated_caller_the_answer_is_401(client, headers):
    body = _problem(client.get("/who", headers=headers), 401)
    assert body["detail"] == "this operation needs an authenticated caller"


def test_a_service_can_say_what_needed_the_caller(client):
    assert _problem(client.get("/notes"), 401)["detail"] == "reading notes needs an authenticated caller"


def test_require_caller_refuses_an_anonymous_caller_then_an_id_too_long_for_the_service(client):
    assert _problem(client.get("/short"), 401)["detail"] == "this operation needs an authenticated caller"
    assert _problem(client.get("/short", headers={"x-caller-id": "sixsix"}), 400)["detail"] == (
        "the caller id is longer than 5 characters"
    )
    assert client.get("/short", headers={"x-caller-id": "fivee"}).status_code == 200


def test_require_role_is_401_for_no_caller_and_403_for_a_caller_without_the_role(client):
    assert (
        _problem(client.get("/admin"), 401)["detail"]
        == "this operation needs an authenticated caller with role 'admin'"
    )
    assert _problem(client.get("/admin", headers=ALICE), 403)["detail"] == "this operation needs role 'admin'"
    assert client.get("/admin", headers={**ALICE, "x-caller-roles": "customer,admin"}).status_code == 200


def test_an_admin_sees_the_customer_they_name_or_everyone():
    roles = frozenset({"admin"})
    assert visible_customer("c-2", "ops", roles) == "c-2"
    assert visible_customer(None, "ops", roles) is None


def test_a_customer_sees_only_their_own():
    roles = frozenset({"customer"})
    assert visible_customer(None, "c-1", roles) == "c-1"
    assert visible_customer("c-1", "c-1", roles) == "c-1"
    assert visible_customer(None, "c-1", frozenset()) == "c-1"


def test_a_customer_naming_another_is_forbidden_with_the_services_words():
    with pytest.raises(Forbidden) as refused:
        visible_customer("c-2", "c-1", frozenset({"customer"}), refusal="a customer lists only their own orders")
    assert (refused.value.status, refused.value.detail) == (403, "a customer lists only their own orders")
    with pytest.raises(Forbidden) as refused:
        visible_customer("c-2", "c-1", frozenset())
    assert refused.value.detail == "a customer can see only their own items"
