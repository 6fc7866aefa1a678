"""The inventory's HTTP API, through Litestar's test client, on SQLite and PostgreSQL."""

import uuid

import pytest

from inventory.tests.conftest import ADMIN

CUSTOMER = {"x-caller-id": "u1", "x-caller-roles": "customer"}


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def _set(client, product_id, on_hand, reason="count"):
    return client.put(f"/stock/{product_id}", json={"on_hand": on_hand, "reason": reason}, headers=ADMIN)


def _adjust(client, product_id, delta, reason="delivery"):
    return client.post(f"/stock/{product_id}/adjustments", json={"delta": delta, "reason": reason}, headers=ADMIN)


def test_setting_stock_creates_the_row_and_anyone_can_read_the_level(client):
    product = uuid.uuid4()
    response = _set(client, product, 7)
    assert response.status_code == 200, response.text
    level = {"product_id": str(product), "available": 7, "on_hand": 7, "reserved": 0}
    assert response.json() == level
    assert client.get(f"/stock/{product}").json() == level


def test_a_product_without_stock_is_404(client):
    problem = _problem(client.get(f"/stock/{uuid.uuid4()}"), 404)
    assert problem["type"].endswith("/not-found")
    _problem(client.get("/stock/not-a-uuid"), 404)


def test_adjustments_add_and_remove_units(client):
    product = uuid.uuid4()
    _set(client, product, 5)
    assert _adjust(client, product, 10).json()["on_hand"] == 15
    assert _adjust(client, product, -4, "broken").json() == {
        "product_id": str(product),
        "available": 11,
        "on_hand": 11,
        "reserved": 0,
    }


def test_an_adjustment_creates_the_row_of_a_product_without_one(client):
    product = uuid.uuid4()
    assert _adjust(client, product, 3).json()["on_hand"] == 3


def test_an_adjustment_below_zero_is_409_and_changes_nothing(client):
    product = uuid.uuid4()
    _set(client, product, 2)
    problem = _problem(_adjust(client, product, -3), 409)
    assert "only 2 are on hand" in problem["detail"]
    assert client.get(f"/stock/{product}").json()["on_hand"] == 2
    assert len(client.get(f"/stock/{product}/movements", headers=ADMIN).json()["items"]) == 1


def test_an_adjustment_of_zero_is_422(client):
    product = uuid.uuid4()
    _set(client, product, 2)
    assert "changes nothing" in _problem(_adjust(client, product, 0), 422)["detail"]


def test_every_change_is_a_movement_listed_newest_first(client):
    product = uuid.uuid4()
    _set(client, product, 10, "first count")
    _adjust(client, product, 5, "delivery 17")
    _adjust(client, product, -2, "dropped")
    _set(client, product, 20, "recount")
    _set(client, product, 20, "same count: nothing moves")
    page = client.get(f"/stock/{product}/movements", headers=ADMIN).json()
    moves = [(m["delta"], m["on_hand_after"], m["reason"], m["order_id"]) for m in page["items"]]
    assert moves == [
        (7, 20, "recount", None),
        (-2, 13, "dropped", None),
        (5, 15, "delivery 17", None),
        (10, 10, "first count", None),
    ]
    assert page["next_cursor"] is None
    assert all(m["product_id"] == str(product) for m in page["items"])


def test_movements_page_through_with_a_cursor(client):
    product = uuid.uuid4()
    for delta in range(1, 8):
        _adjust(client, product, delta)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/stock/{product}/movements", params=params, headers=ADMIN).json()
        seen += [m["delta"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [7, 6, 5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 51}, {"limit": "ten"}, {"cursor": "%%%"}, {"cursor": "WyJ4Il0"}]
)
def test_bad_movement_queries_are_400_problems(client, params):
    product = uuid.uuid4()
    _set(client, product, 1)
    _problem(client.get(f"/stock/{product}/movements", params=params, headers=ADMIN), 400)


def test_movements_of_a_product_without_stock_are_404(client):
    _problem(client.get(f"/stock/{uuid.uuid4()}/movements", headers=ADMIN), 404)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"reason": "x"}, "on_hand"),
        ({"on_hand": -1, "reason": "x"}, "on_hand"),
        ({"on_hand": "ten", "reason": "x"}, "on_hand"),
        ({"on_hand": 10**9 + 1, "reason": "x"}, "on_hand"),
        ({"on_hand": 1}, "reason"),
        ({"on_hand": 1, "reason": ""}, "reason"),
        ({"on_hand": 1, "reason": "x" * 201}, "reason"),
        ({"on_hand": 1, "reason": "x", "colour": "red"}, "colour"),
    ],
)
def test_invalid_stock_bodies_are_400_problems_naming_the_field(client, body, field):
    problem = _problem(client.put(f"/stock/{uuid.uuid4()}", json=body, headers=ADMIN), 400)
    assert field in str(problem["errors"])


def test_malformed_json_is_a_400_problem(client):
    response = client.put(
        f"/stock/{uuid.uuid4()}", content=b'{"on_hand": 1,', headers={**ADMIN, "content-type": "application/json"}
    )
    assert _problem(response, 400)["type"].endswith("/malformed-body")


def test_changes_and_admin_reads_need_an_admin(client):
    product = uuid.uuid4()
    body = {"on_hand": 1, "reason": "x"}
    _problem(client.put(f"/stock/{product}", json=body), 401)
    _problem(client.put(f"/stock/{product}", json=body, headers=CUSTOMER), 403)
    _problem(client.post(f"/stock/{product}/adjustments", json={"delta": 1, "reason": "x"}, headers=CUSTOMER), 403)
    _problem(client.get(f"/stock/{product}/movements", headers=CUSTOMER), 403)
    _problem(client.get(f"/reservations/{uuid.uuid4()}"), 401)
    _problem(client.get(f"/reservations/{uuid.uuid4()}", headers=CUSTOMER), 403)
    _problem(client.get(f"/stock/{product}"), 404)  # nothing was created


def test_an_order_nobody_reserved_for_has_no_reservation(client):
    _problem(client.get(f"/reservations/{uuid.uuid4()}", headers=ADMIN), 404)


def test_the_openapi_document_describes_the_inventory_api(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert {
        "/stock/{product_id}",
        "/stock/{product_id}/adjustments",
        "/stock/{product_id}/movements",
        "/reservations/{order_id}",
    } <= set(paths)
    assert "/metrics" not in paths
