"""The payments read API: admin only, one payment per order, keyset pages by status."""

import uuid

from payments.tests.conftest import ADMIN, cancelled, payment, publish, requested, settled


async def test_reading_payments_needs_an_admin(payments):
    _, http = payments
    order_id = uuid.uuid4()
    assert (await http.get(f"/payments/{order_id}")).status_code == 401
    customer = {"x-caller-id": "c-1", "x-caller-roles": "customer"}
    assert (await http.get(f"/payments/{order_id}", headers=customer)).status_code == 403
    assert (await http.get("/payments", headers=customer)).status_code == 403


async def test_an_order_without_a_payment_is_404(payments):
    _, http = payments
    response = await http.get(f"/payments/{uuid.uuid4()}", headers=ADMIN)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_payments_are_listed_by_status_a_page_at_a_time(payments, redis):
    app, http = payments
    captured = [uuid.uuid4() for _ in range(5)]
    for order_id in captured:
        await publish(redis, requested(order_id))
    declined = uuid.uuid4()
    await publish(redis, requested(declined, card_token="tok_declined"))
    await publish(redis, cancelled(uuid.uuid4()))
    await settled(app, redis)

    seen, cursor, pages = [], None, 0
    while True:
        params = {"status": "captured", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/payments", params=params, headers=ADMIN)).json()
        seen += [p["order_id"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(map(str, captured)) and pages == 3
    everything = (await http.get("/payments", headers=ADMIN)).json()
    assert sorted(p["status"] for p in everything["items"]) == ["cancelled"] + ["captured"] * 5 + ["declined"]
    assert everything["next_cursor"] is None
    assert (await payment(http, declined))["status"] == "declined"


async def test_a_cancelled_order_never_asked_for_shows_no_amount(payments, redis):
    app, http = payments
    order_id = uuid.uuid4()
    await publish(redis, cancelled(order_id, reason="out of stock"))
    await settled(app, redis)
    recorded = await payment(http, order_id)
    assert recorded["status"] == "cancelled" and recorded["reason"] == "order cancelled: out of stock"
    assert recorded["amount"] == {"amount": 0, "currency": "XXX"}


async def test_bad_list_parameters_are_400(payments):
    _, http = payments
    for params in ({"status": "lost"}, {"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor"}, {"cursor": "WzFd"}):
        response = await http.get("/payments", params=params, headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_hostile_list_parameters_are_400_never_500(payments):
    _, http = payments
    for params in (
        {"status": "captured\x00"},
        {"cursor": "\x00"},
        {"cursor": "é"},
        {"cursor": "A" * 201},
        {"limit": "99999999999999999999999"},
        {"limit": "-1"},
    ):
        response = await http.get("/payments", params=params, headers=ADMIN)
        assert response.status_code == 400, (params, response.text)
    assert (await http.get("/payments/not-a-uuid", headers=ADMIN)).status_code in (400, 404)
