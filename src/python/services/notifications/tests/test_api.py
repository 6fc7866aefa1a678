"""The notifications read API: a customer sees their own, an admin all; keyset pages; clear 4xx."""

import uuid

from notifications.tests.conftest import ADMIN, cancelled, confirmed, customer, handled, listed, publish, running


async def _two_customers(redis) -> dict[str, list[uuid.UUID]]:
    orders = {"c-1": [uuid.uuid4() for _ in range(3)], "c-2": [uuid.uuid4() for _ in range(2)]}
    for customer_id, order_ids in orders.items():
        for order_id in order_ids:
            await publish(redis, confirmed(order_id, customer_id=customer_id))
    await publish(redis, cancelled(orders["c-2"][0], customer_id="c-2"))
    await handled(redis)
    return orders


async def test_a_customer_sees_only_their_own_notifications(notifications, redis):
    _, http = notifications
    orders = await _two_customers(redis)
    mine = await listed(http, customer("c-1"), limit=2)
    assert sorted(n["order_id"] for n in mine) == sorted(map(str, orders["c-1"]))
    assert {n["customer_id"] for n in mine} == {"c-1"}
    # Another customer's order, asked for by id, shows nothing of it.
    assert await listed(http, customer("c-1"), order_id=str(orders["c-2"][0])) == []


async def test_a_customer_naming_another_customer_is_refused(notifications):
    _, http = notifications
    response = await http.get("/notifications", params={"customer_id": "c-2"}, headers=customer("c-1"))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_admin_sees_everyones_and_filters_by_customer_or_order(notifications, redis):
    _, http = notifications
    orders = await _two_customers(redis)
    assert len(await listed(http, ADMIN, limit=1)) == 6
    assert len(await listed(http, ADMIN, customer_id="c-2")) == 3
    by_order = await listed(http, ADMIN, order_id=str(orders["c-2"][0]))
    assert sorted(n["kind"] for n in by_order) == ["order_cancelled", "order_confirmed"]


async def test_pages_follow_the_order_of_recording_without_gaps_or_repeats(notifications, redis):
    _, http = notifications
    await _two_customers(redis)
    whole = (await http.get("/notifications", params={"limit": 200}, headers=ADMIN)).json()["items"]
    paged = await listed(http, ADMIN, limit=2)
    assert [n["id"] for n in paged] == [n["id"] for n in whole]
    assert [n["created_at"] for n in whole] == sorted(n["created_at"] for n in whole)


async def test_reading_without_a_caller_is_401(notifications):
    _, http = notifications
    response = await http.get("/notifications")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_bad_parameters_are_400(notifications):
    _, http = notifications
    for params in ({"order_id": "nope"}, {"limit": 0}, {"limit": 201}, {"cursor": "???"}, {"customer_id": ""}):
        response = await http.get("/notifications", params=params, headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_hostile_parameters_are_400_on_either_database(make_settings, database_url, redis):
    # A NUL byte cannot be stored or compared in PostgreSQL text: passed on to the query, it is a 500.
    async with running(make_settings(database_url)) as (_, http):
        for params in (
            {"customer_id": "c-1\x00"},
            {"customer_id": "c\x01"},
            {"cursor": "\x00"},
            {"cursor": "é"},
            {"order_id": "\x00"},
            {"limit": "1e3"},
            {"limit": "99999999999999999999999"},
        ):
            response = await http.get("/notifications", params=params, headers=ADMIN)
            assert response.status_code == 400, (params, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
