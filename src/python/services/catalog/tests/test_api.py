"""The catalog's HTTP API, through Litestar's test client, on SQLite and PostgreSQL."""

import uuid

import pytest

from catalog.tests.conftest import ADMIN


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


def test_a_created_product_can_be_read_by_id_and_by_sku(client, create):
    created = create("tea-green-250g", name="Green tea", amount=450, description="Sencha")
    assert created["sku"] == "TEA-GREEN-250G"
    assert created["price"] == {"amount": 450, "currency": "EUR"}
    assert created["active"] is True and created["version"] == 1
    assert client.get(f"/products/{created['id']}").json() == created
    assert client.get("/products/by-sku/Tea-Green-250G").json() == created


def test_creating_answers_201_with_the_location(client):
    body = {"sku": "A1", "name": "A", "price": {"amount": 1, "currency": "EUR"}}
    response = client.post("/products", json=body, headers=ADMIN)
    assert response.status_code == 201
    assert response.headers["location"] == f"/products/{response.json()['id']}"


def test_unknown_ids_and_skus_are_404(client):
    assert _problem(client.get(f"/products/{uuid.uuid4()}"), 404)["type"].endswith("/not-found")
    assert "NOPE" in _problem(client.get("/products/by-sku/nope"), 404)["detail"]
    _problem(client.get("/products/not-a-uuid"), 404)
    # No SKU has a NUL (or anything outside the SKU alphabet): a 404, not a 500 from PostgreSQL.
    _problem(client.get("/products/by-sku/tea%00"), 404)


def test_a_duplicate_sku_is_409_whatever_its_case(client, create):
    create("TEA-1")
    body = {"sku": "tea-1", "name": "Other", "price": {"amount": 1, "currency": "EUR"}}
    problem = _problem(client.post("/products", json=body, headers=ADMIN), 409)
    assert "TEA-1" in problem["detail"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "x", "price": {"amount": 1, "currency": "EUR"}}, "sku"),
        ({"sku": "A", "name": "x", "price": {"amount": -1, "currency": "EUR"}}, "amount"),
        ({"sku": "A", "name": "x", "price": {"amount": "one", "currency": "EUR"}}, "amount"),
        ({"sku": "A", "name": "x", "price": {"amount": 1, "currency": "eur"}}, "currency"),
        ({"sku": "bad sku!", "name": "x", "price": {"amount": 1, "currency": "EUR"}}, "sku"),
        ({"sku": "A", "name": "", "price": {"amount": 1, "currency": "EUR"}}, "name"),
        ({"sku": "A", "name": "x", "price": {"amount": 1, "currency": "EUR"}, "colour": "red"}, "colour"),
    ],
)
def test_invalid_bodies_are_400_problems_naming_the_field(client, body, field):
    problem = _problem(client.post("/products", json=body, headers=ADMIN), 400)
    assert field in str(problem["errors"])


def test_malformed_json_is_a_400_problem(client):
    response = client.post("/products", content=b'{"sku": "A",', headers={**ADMIN, "content-type": "application/json"})
    assert _problem(response, 400)["type"].endswith("/malformed-body")


def test_an_oversized_body_is_a_413_problem(client):
    body = {"sku": "A", "name": "x", "description": "d" * 2_000_000, "price": {"amount": 1, "currency": "EUR"}}
    _problem(client.post("/products", json=body, headers=ADMIN), 413)


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"sku": "A", "name": "   ", "price": {"amount": 1, "currency": "EUR"}}, "whitespace"),
        ({"sku": "A", "name": "x", "price": {"amount": 1, "currency": "XXX"}}, "not supported"),
    ],
)
def test_bodies_breaking_catalog_rules_are_422(client, body, fragment):
    assert fragment in _problem(client.post("/products", json=body, headers=ADMIN), 422)["detail"]


def test_changes_need_an_admin(client, create):
    product = create("A")
    body = {"sku": "B", "name": "x", "price": {"amount": 1, "currency": "EUR"}}
    _problem(client.post("/products", json=body), 401)
    _problem(client.post("/products", json=body, headers={"x-caller-id": "u1", "x-caller-roles": "customer"}), 403)
    _problem(client.patch(f"/products/{product['id']}", json={"name": "y"}, headers={"x-caller-id": "u1"}), 403)
    _problem(client.post(f"/products/{product['id']}/deactivate"), 401)


def test_a_patch_changes_only_the_given_fields_and_bumps_the_version(client, create):
    product = create("A", name="Old", amount=100)
    response = client.patch(
        f"/products/{product['id']}", json={"price": {"amount": 120, "currency": "USD"}}, headers=ADMIN
    )
    updated = response.json()
    assert updated["price"] == {"amount": 120, "currency": "USD"}
    assert updated["name"] == "Old"
    assert updated["version"] == 2
    assert updated["updated_at"] >= product["updated_at"]


def test_a_patch_that_changes_nothing_keeps_the_version(client, create):
    product = create("A", name="Same")
    assert client.patch(f"/products/{product['id']}", json={"name": "Same"}, headers=ADMIN).json()["version"] == 1


def test_an_empty_patch_is_422_and_an_unknown_product_404(client, create):
    product = create("A")
    _problem(client.patch(f"/products/{product['id']}", json={}, headers=ADMIN), 422)
    _problem(client.patch(f"/products/{uuid.uuid4()}", json={"name": "x"}, headers=ADMIN), 404)


def test_deactivating_is_idempotent(client, create):
    product = create("A")
    first = client.post(f"/products/{product['id']}/deactivate", headers=ADMIN).json()
    second = client.post(f"/products/{product['id']}/deactivate", headers=ADMIN).json()
    assert first["active"] is False and first["version"] == 2
    assert second == first
    _problem(client.post(f"/products/{uuid.uuid4()}/deactivate", headers=ADMIN), 404)


def test_listing_pages_through_every_product_in_sku_order(client, create):
    skus = [f"SKU-{i:02d}" for i in range(7)]
    for sku in reversed(skus):
        create(sku)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/products", params=params).json()
        seen += [p["sku"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == skus


def test_listing_filters_combine(client, create):
    create("TEA-1", name="Green tea", amount=450)
    create("TEA-2", name="Black tea", amount=900)
    create("MUG-1", name="Mug", amount=1200, currency="USD")
    inactive = create("TEA-3", name="Old tea", amount=300)
    client.post(f"/products/{inactive['id']}/deactivate", headers=ADMIN)

    def skus(**params):
        return [p["sku"] for p in client.get("/products", params=params).json()["items"]]

    assert skus() == ["MUG-1", "TEA-1", "TEA-2", "TEA-3"]
    assert skus(active="true") == ["MUG-1", "TEA-1", "TEA-2"]
    assert skus(active="false") == ["TEA-3"]
    assert skus(currency="USD") == ["MUG-1"]
    assert skus(min_price=400, max_price=1000) == ["TEA-1", "TEA-2"]
    assert skus(q="TEA", active="true") == ["TEA-1", "TEA-2"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 51},
        {"limit": "ten"},
        {"cursor": "%%%"},
        {"min_price": 5, "max_price": 1},
        {"currency": "eur"},
        {"active": "perhaps"},
        # A NUL cannot reach a PostgreSQL text comparison (a 500 there): not in a search, nor in a
        # cursor, whose SKU must be one the catalog could have issued.
        {"q": "tea\x00"},
        {"cursor": "AA"},  # base64 of "\x00"
        {"cursor": "dGVhIGdyZWVu"},  # base64 of "tea green": no SKU has a space
    ],
)
def test_bad_query_parameters_are_400_problems(client, params):
    _problem(client.get("/products", params=params), 400)


def test_the_openapi_document_describes_the_products_api(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert {"/products", "/products/{product_id}", "/products/by-sku/{sku}"} <= set(paths)
    assert "/metrics" not in paths
