"""The shop's operations as a caller does them through the gateway, for the end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from flotilla_contracts.orders import FINAL_STATUSES
from flotilla_kit.testing.waiting import eventually_sync


def new_product(admin: httpx.Client, *, price: int = 450, stock: int = 10, name: str = "Green tea") -> str:
    """A product in the catalog with ``stock`` units in inventory; returns its id.

    Inventory learns of the product from the catalog's ProductCreated event: its stock row appears
    by itself, then the admin counts the stock in.
    """
    body = {"sku": f"TEA-{uuid.uuid4().hex[:8]}", "name": name, "price": {"amount": price, "currency": "EUR"}}
    created = admin.post("/api/catalog/products", json=body)
    assert created.status_code == 201, created.text
    product_id: str = created.json()["id"]
    eventually_sync(
        lambda: admin.get(f"/api/inventory/stock/{product_id}").status_code == 200,
        timeout=30,
        what="inventory's stock row of a new product (from ProductCreated)",
    )
    counted = admin.put(f"/api/inventory/stock/{product_id}", json={"on_hand": stock, "reason": "counted in"})
    assert counted.status_code == 200, counted.text
    return product_id


def place_order(
    customer: httpx.Client, lines: list[tuple[str, int]], *, card_token: str = "tok_visa", key: str | None = None
) -> httpx.Response:
    body = {"lines": [{"product_id": p, "quantity": q} for p, q in lines], "card_token": card_token}
    return customer.post("/api/orders", json=body, headers={"idempotency-key": key or uuid.uuid4().hex})


def final_order(customer: httpx.Client, order_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """The order once its saga has ended (confirmed or cancelled)."""
    seen: dict[str, Any] = {}

    def final() -> bool:
        response = customer.get(f"/api/orders/{order_id}")
        assert response.status_code == 200, response.text
        seen.update(response.json())
        return seen["status"] in FINAL_STATUSES

    eventually_sync(final, timeout=timeout, interval=0.05, what=f"a final state of order {order_id}")
    return seen


def stock(admin: httpx.Client, product_id: str) -> dict[str, Any]:
    response = admin.get(f"/api/inventory/stock/{product_id}")
    assert response.status_code == 200, response.text
    level: dict[str, Any] = response.json()
    return level
