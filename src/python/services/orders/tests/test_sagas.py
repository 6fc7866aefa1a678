"""The operators' view of the sagas: every customer's orders by state, and the stuck ones."""

from orders.tests.conftest import ADMIN, FakeClock, customer, new_key, order_body

STEP_TIMEOUT = 30.0


async def _place(client, product, who: str) -> str:
    response = await client.post("/orders", json=order_body(product), headers={**customer(who), **new_key()})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_an_admin_lists_every_customers_orders_by_state_newest_first(start_orders, catalog):
    tea = catalog.product()
    # The sweeper stays away (an hour between runs): the test decides when a deadline has passed.
    async with start_orders(sweep_interval_seconds=3600) as client:
        placed = [await _place(client, tea, who) for who in ("ann", "bob", "cid")]
        page = await client.get("/orders/sagas?status=awaiting_stock&limit=2", headers=ADMIN)
        assert page.status_code == 200, page.text
        rest = await client.get(
            f"/orders/sagas?status=awaiting_stock&cursor={page.json()['next_cursor']}", headers=ADMIN
        )
        listed = [o["id"] for o in page.json()["items"] + rest.json()["items"]]
        assert listed[:3] == list(reversed(placed))
        assert {o["customer_id"] for o in page.json()["items"] + rest.json()["items"]} >= {"ann", "bob", "cid"}
        none = await client.get("/orders/sagas?status=confirmed", headers=ADMIN)
        assert none.json() == {"items": [], "next_cursor": None}


async def test_orders_past_their_step_deadline_are_listed_and_counted_as_stuck(start_orders, catalog):
    clock = FakeClock()
    async with start_orders(clock=clock, sweep_interval_seconds=3600, saga_step_timeout_seconds=STEP_TIMEOUT) as client:
        early = await _place(client, catalog.product(), "dee")
        clock.advance(STEP_TIMEOUT / 2)
        late = await _place(client, catalog.product(), "eve")
        counts = (await client.get("/orders/sagas/counts", headers=ADMIN)).json()
        assert counts["stuck"] == 0 and counts["by_status"]["awaiting_stock"] >= 2

        clock.advance(STEP_TIMEOUT / 2 + 1)  # past the first order's deadline, not the second's
        stuck = (await client.get("/orders/sagas?stuck=true", headers=ADMIN)).json()["items"]
        assert [o["id"] for o in stuck] == [early]
        assert late not in [o["id"] for o in stuck]
        counts = (await client.get("/orders/sagas/counts", headers=ADMIN)).json()
        assert counts["stuck"] == 1


async def test_only_an_admin_sees_the_sagas_and_bad_values_are_400(start_orders):
    async with start_orders() as client:
        for path in ("/orders/sagas", "/orders/sagas/counts"):
            refused = await client.get(path, headers=customer("mallory"))
            assert refused.status_code == 403 and "admin" in refused.json()["detail"]
            assert (await client.get(path)).status_code == 401
        assert (await client.get("/orders/sagas?status=lost", headers=ADMIN)).status_code == 400
        assert (await client.get("/orders/sagas?cursor=nonsense", headers=ADMIN)).status_code == 400
        assert (await client.get("/orders/sagas?limit=0", headers=ADMIN)).status_code == 400
