"""The orders HTTP API against a real catalog process and real Redis, on SQLite and PostgreSQL."""

import asyncio
import uuid

import msgspec
import sqlalchemy as sa

from flotilla_contracts.orders import OrderCreate
from flotilla_kit.db import Database
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.waiting import eventually
from orders import domain
from orders.idempotency import IdempotencyKeys
from orders.tests.conftest import ADMIN, FakeClock, customer, new_key, order_body, published


def _problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()


async def _count(database_url, table: str) -> int:
    db = Database(database_url)
    try:
        async with db.reader() as session:
            return int(await session.scalar(sa.select(sa.func.count()).select_from(sa.table(table))) or 0)
    finally:
        await db.dispose()


async def test_an_order_is_placed_at_catalog_prices_with_its_first_step_and_its_event(start_orders, catalog, redis):
    tea, mug = catalog.product(amount=450), catalog.product(amount=1200)
    async with start_orders() as client:
        response = await client.post(
            "/orders", json=order_body(tea, mug, quantity=2), headers={**customer(), **new_key()}
        )
        assert response.status_code == 201, response.text
        order = response.json()
        assert response.headers["location"] == f"/orders/{order['id']}"
        assert "idempotent-replayed" not in response.headers
        assert order["customer_id"] == "alice" and order["status"] == "awaiting_stock"
        assert order["total"] == {"amount": 2 * 450 + 2 * 1200, "currency": "EUR"}
        assert [(line["sku"], line["quantity"], line["unit_price"]["amount"]) for line in order["lines"]] == [
            (tea["sku"], 2, 450),
            (mug["sku"], 2, 1200),
        ]
        assert [step["step"] for step in order["history"]] == ["placed"]
        assert order["step_deadline"] > order["created_at"]
        assert (await client.get(f"/orders/{order['id']}", headers=customer())).json() == order

        async def placed_event():
            return len(await published(redis, order["id"])) == 1

        await eventually(placed_event, what="OrderPlaced relayed")
        [(kind, payload)] = await published(redis, order["id"])
        assert kind == "orders.OrderPlaced"
        assert payload["customer_id"] == "alice" and payload["total"] == order["total"]
        assert payload["lines"] == order["lines"]


async def test_placing_needs_a_caller_and_a_well_formed_idempotency_key(start_orders, catalog):
    tea = catalog.product()
    async with start_orders() as client:
        _problem(await client.post("/orders", json=order_body(tea), headers=new_key()), 401)
        assert (
            "required"
            in _problem(await client.post("/orders", json=order_body(tea), headers=customer()), 400)["detail"]
        )
        for bad in ["", "has space", "x" * 256, b"caf\xe9"]:
            headers = {**customer(), "Idempotency-Key": bad}
            _problem(await client.post("/orders", json=order_body(tea), headers=headers), 400)


async def test_unknown_inactive_and_mixed_currency_products_are_422_naming_the_product(start_orders, catalog):
    tea, old, dollar = catalog.product(), catalog.product(active=False), catalog.product(currency="USD")
    unknown = str(uuid.uuid4())
    async with start_orders() as client:

        async def place(body):
            return await client.post("/orders", json=body, headers={**customer(), **new_key()})

        assert unknown in _problem(await place({"lines": [{"product_id": unknown, "quantity": 1}]}), 422)["detail"]
        assert old["sku"] in _problem(await place(order_body(tea, old)), 422)["detail"]
        assert "one currency" in _problem(await place(order_body(tea, dollar)), 422)["detail"]
        _problem(await place({"lines": []}), 400)
        _problem(await place({"lines": [{"product_id": tea["id"], "quantity": 0}]}), 400)


async def test_a_retry_with_the_same_key_and_body_replays_the_first_answer(start_orders, catalog, redis, database_url):
    tea = catalog.product()
    headers = {**customer(), **new_key()}
    async with start_orders() as client:
        first = await client.post("/orders", json=order_body(tea), headers=headers)
        # The same request with its keys in another order, and the default card spelt out: the same body.
        again = await client.post("/orders", json={"card_token": "tok_visa", **order_body(tea)}, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.content == first.content
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["idempotent-replayed"] == "true"
        order_id = first.json()["id"]

        async def relayed():
            return len(await published(redis, order_id)) == 1

        await eventually(relayed, what="OrderPlaced relayed")
    assert await _count(database_url, "orders") == 1
    assert len(await published(redis, order_id)) == 1


async def test_the_same_key_with_another_body_is_422(start_orders, catalog):
    tea, mug = catalog.product(), catalog.product()
    headers = {**customer(), **new_key()}
    async with start_orders() as client:
        assert (await client.post("/orders", json=order_body(tea), headers=headers)).status_code == 201
        problem = _problem(await client.post("/orders", json=order_body(mug), headers=headers), 422)
        assert "another body" in problem["detail"]


async def test_keys_are_scoped_per_caller(start_orders, catalog):
    tea = catalog.product()
    key = new_key()
    async with start_orders() as client:
        alices = await client.post("/orders", json=order_body(tea), headers={**customer("alice"), **key})
        bobs = await client.post("/orders", json=order_body(tea), headers={**customer("bob"), **key})
        assert alices.status_code == bobs.status_code == 201
        assert alices.json()["id"] != bobs.json()["id"]
        assert "idempotent-replayed" not in bobs.headers


async def test_a_refused_order_is_replayed_too(start_orders, catalog):
    body = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}
    headers = {**customer(), **new_key()}
    async with start_orders() as client:
        first = await client.post("/orders", json=body, headers=headers)
        again = await client.post("/orders", json=body, headers=headers)
        _problem(first, 422)
        assert again.status_code == 422 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"


async def test_two_simultaneous_requests_with_one_key_create_one_order(start_orders, catalog, redis, database_url):
    tea = catalog.product()
    headers = {**customer(), **new_key()}
    async with start_orders() as client:
        answers = await asyncio.gather(
            *(client.post("/orders", json=order_body(tea), headers=headers) for _ in range(2))
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses in ([201, 409], [201, 201]), [answer.text for answer in answers]
        created = [answer for answer in answers if answer.status_code == 201]
        if len(created) == 2:  # the second came after the first had finished: a replay
            assert created[0].content == created[1].content
            assert sum(answer.headers.get("idempotent-replayed") == "true" for answer in created) == 1
        else:
            assert [a for a in answers if a.status_code == 409][0].headers["retry-after"] == "1"
    assert await _count(database_url, "orders") == 1


async def test_a_request_in_flight_makes_a_retry_409_until_its_claim_times_out(start_orders, catalog, database_url):
    tea = catalog.product()
    body = order_body(tea)
    key = uuid.uuid4().hex
    clock = FakeClock()
    # A request that claimed the key and then crashed (or still runs): its claim, as it left it.
    db = Database(database_url)
    keys = IdempotencyKeys(db, lock_timeout_seconds=60, ttl_seconds=86_400, clock=clock)
    async with start_orders(clock=clock, idempotency_lock_timeout_seconds=60) as client:
        fingerprint = domain.fingerprint(msgspec.json.encode(msgspec.convert(body, OrderCreate)))
        await keys.claim("alice", key, fingerprint)
        await db.dispose()
        headers = {**customer(), "Idempotency-Key": key}
        _problem(await client.post("/orders", json=body, headers=headers), 409)
        clock.advance(61)  # past the lock timeout: the crashed request's claim is taken over
        taken_over = await client.post("/orders", json=body, headers=headers)
        assert taken_over.status_code == 201, taken_over.text
        assert "idempotent-replayed" not in taken_over.headers


async def test_an_unreachable_catalog_is_a_503_and_releases_the_key(start_orders, catalog, database_url):
    tea = catalog.product()
    headers = {**customer(), **new_key()}
    async with start_orders(service_urls=f"catalog=http://127.0.0.1:{free_port()}") as client:
        response = await client.post("/orders", json=order_body(tea), headers=headers)
        problem = _problem(response, 503)
        assert "catalog" in problem["detail"]
        assert int(response.headers["retry-after"]) >= 1
    assert await _count(database_url, "idempotency_keys") == 0  # released: a retry runs anew
    async with start_orders() as client:  # the catalog is back (found this time)
        assert (await client.post("/orders", json=order_body(tea), headers=headers)).status_code == 201


async def test_a_customer_sees_only_their_own_orders_and_an_admin_sees_all(start_orders, catalog):
    tea = catalog.product()
    async with start_orders() as client:
        order = (await client.post("/orders", json=order_body(tea), headers={**customer("alice"), **new_key()})).json()
        assert (await client.get(f"/orders/{order['id']}", headers=customer("alice"))).status_code == 200
        _problem(await client.get(f"/orders/{order['id']}", headers=customer("bob")), 404)
        assert (await client.get(f"/orders/{order['id']}", headers=ADMIN)).json()["id"] == order["id"]
        _problem(await client.get(f"/orders/{uuid.uuid4()}", headers=ADMIN), 404)
        _problem(await client.get(f"/orders/{order['id']}"), 401)
        _problem(await client.get("/orders"), 401)


async def test_listing_pages_through_the_callers_orders_newest_first(start_orders, catalog):
    tea = catalog.product()
    clock = FakeClock()
    async with start_orders(clock=clock) as client:
        ids = []
        for i in range(5):
            if i != 3:  # two orders at one instant: the id breaks the tie
                clock.advance(1)
            placed = await client.post("/orders", json=order_body(tea), headers={**customer("alice"), **new_key()})
            ids.append(placed.json()["id"])
        await client.post("/orders", json=order_body(tea), headers={**customer("bob"), **new_key()})
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/orders", params=params, headers=customer("alice"))).json()
            seen += [order["id"] for order in page["items"]]
            assert all(order["history"] for order in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        newest_first = ids[::-1]
        newest_first[1:3] = sorted(newest_first[1:3], key=uuid.UUID, reverse=True)  # the tie, by id
        assert seen == newest_first
        for params in ({"limit": 0}, {"limit": 101}, {"cursor": "%%%"}, {"cursor": "WzFd"}):
            _problem(await client.get("/orders", params=params, headers=customer()), 400)


async def test_an_admin_lists_any_customers_orders_and_a_customer_only_their_own(start_orders, catalog):
    tea = catalog.product()
    async with start_orders() as client:
        bobs = (await client.post("/orders", json=order_body(tea), headers={**customer("bob"), **new_key()})).json()
        listed = (await client.get("/orders", params={"customer_id": "bob"}, headers=ADMIN)).json()
        assert [order["id"] for order in listed["items"]] == [bobs["id"]]
        assert (await client.get("/orders", headers=ADMIN)).json()["items"] == []  # the admin's own
        mine = await client.get("/orders", params={"customer_id": "bob"}, headers=customer("bob"))
        assert [order["id"] for order in mine.json()["items"]] == [bobs["id"]]
        _problem(await client.get("/orders", params={"customer_id": "bob"}, headers=customer("alice")), 403)


async def test_the_same_body_spelt_otherwise_is_the_same_request(start_orders, catalog):
    tea = catalog.product()
    headers = {**customer(), **new_key(), "content-type": "application/json"}
    first = f'{{"lines":[{{"product_id":"{tea["id"]}","quantity":1}}],"card_token":"tok_visa"}}'
    # Other key order, whitespace, an upper-case UUID and the default card left out.
    again = f'{{ "lines" : [ {{ "quantity" : 1 , "product_id" : "{tea["id"].upper()}" }} ] }}\n'
    async with start_orders() as client:
        placed = await client.post("/orders", content=first, headers=headers)
        replayed = await client.post("/orders", content=again, headers=headers)
    assert placed.status_code == replayed.status_code == 201
    assert replayed.content == placed.content and replayed.headers["idempotent-replayed"] == "true"
