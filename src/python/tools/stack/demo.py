"""``stack demo``: the shop's three outcomes through the gateway of a running stack.

It signs tokens with the stack's private key (an admin, two customers), adds products to the
catalog (SKUs unique per run, so it can run again on the same data), waits until inventory has
their stock rows (made from the catalog's events), counts their stock in, then places three
orders, each with its own Idempotency-Key: one that is confirmed, one over the stock and one with
a declined card, both cancelled. It waits for each order's final state and prints a table.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from flotilla_contracts.orders import FINAL_STATUSES
from flotilla_kit.testing.waiting import eventually_sync

AUDIENCE = "flotilla"


class DemoFailed(Exception):
    """The demo could not run, or an order did not end as expected; the message is for the user."""


@dataclass(frozen=True)
class Scenario:
    name: str
    lines: tuple[tuple[str, int], ...]  # (product key, quantity)
    card_token: str
    expected: str  # final status


# product key -> (name, price in cents, units in stock)
PRODUCTS = {
    "tea": ("Green tea", 450, 10),
    "beans": ("Espresso beans", 1290, 5),
    "oolong": ("Rare oolong", 3900, 1),
}
SCENARIOS = (
    Scenario("in stock, card accepted", (("tea", 2), ("beans", 1)), "tok_visa", "confirmed"),
    Scenario("over the stock", (("oolong", 3),), "tok_visa", "cancelled"),
    Scenario("card declined", (("tea", 1),), "tok_declined", "cancelled"),
)


def sign_token(private_key_file: Path, *, sub: str, roles: Sequence[str], ttl: int = 3600) -> str:
    """A JWT the stack's gateway accepts: signed with the stack's private key."""
    try:
        key = serialization.load_pem_private_key(private_key_file.read_bytes(), password=None)
    except FileNotFoundError:
        raise DemoFailed(f"the stack's private key {private_key_file} is missing") from None
    now = int(time.time())
    claims = {"sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + ttl, "roles": list(roles)}
    return jwt.encode(claims, key, algorithm="EdDSA")  # type: ignore[arg-type]


class Gateway:
    """Calls through the gateway as one caller; a 429 (rate limit) is waited out, not an error."""

    def __init__(self, url: str, token: str, deadline: float) -> None:
        self.http = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10)
        self.deadline = deadline

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise DemoFailed(f"the gateway at {self.http.base_url} does not answer ({exc!r})") from None
            if response.status_code != 429 or time.monotonic() > self.deadline:
                return response
            time.sleep(min(float(response.headers.get("retry-after", "0.5") or 0.5), 2.0))

    def expect(self, method: str, path: str, status: int, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, path, **kwargs)
        if response.status_code != status:
            raise DemoFailed(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body


def _until(check: Callable[[], bool], deadline: float, what: str, interval: float = 0.2) -> None:
    try:
        eventually_sync(check, timeout=max(0.0, deadline - time.monotonic()), interval=interval, what=what)
    except TimeoutError:
        raise DemoFailed(f"timed out waiting for {what}") from None


def seed(admin: Gateway, deadline: float) -> dict[str, str]:
    """The demo's products in the catalog, with their stock counted in; product key -> id."""
    run = uuid.uuid4().hex[:8].upper()
    ids = {}
    for key, (name, price, _) in PRODUCTS.items():
        body = {"sku": f"DEMO-{key.upper()}-{run}", "name": name, "price": {"amount": price, "currency": "EUR"}}
        ids[key] = str(admin.expect("POST", "/api/catalog/products", 201, json=body)["id"])
    for key, product_id in ids.items():
        path = f"/api/inventory/stock/{product_id}"

        def has_row(path: str = path) -> bool:
            return admin.call("GET", path).status_code == 200

        # Inventory makes the stock row when the catalog's ProductCreated event reaches it.
        _until(has_row, deadline, f"inventory's stock row of {PRODUCTS[key][0]} ({product_id})")
        admin.expect("PUT", path, 200, json={"on_hand": PRODUCTS[key][2], "reason": "demo"})
    return ids


def place(customer: Gateway, scenario: Scenario, ids: dict[str, str]) -> str:
    body = {
        "lines": [{"product_id": ids[key], "quantity": quantity} for key, quantity in scenario.lines],
        "card_token": scenario.card_token,
    }
    headers = {"idempotency-key": f"demo-{uuid.uuid4().hex}"}
    response = customer.call("POST", "/api/orders", json=body, headers=headers)
    if response.status_code not in (200, 201, 202):
        raise DemoFailed(f"placing the order {scenario.name!r} answered {response.status_code}: {response.text[:500]}")
    return str(response.json()["id"])


def final_state(customer: Gateway, order_id: str, deadline: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def final() -> bool:
        response = customer.call("GET", f"/api/orders/{order_id}")
        if response.status_code == 200:
            seen.clear()
            seen.update(response.json())
        return seen.get("status") in FINAL_STATUSES

    try:
        _until(final, deadline, f"a final state of order {order_id}")
    except DemoFailed:
        if not seen:
            raise
    return seen


def format_results(results: Sequence[tuple[Scenario, dict[str, Any]]]) -> str:
    header = ("ORDER", "SCENARIO", "EXPECTED", "STATUS", "CANCEL REASON", "HISTORY")
    rows = [
        (
            str(order.get("id", "?"))[:8],
            scenario.name,
            scenario.expected,
            str(order.get("status", "?")) + ("" if order.get("status") == scenario.expected else "  << UNEXPECTED"),
            order.get("cancel_reason") or "-",
            " > ".join(str(step.get("step")) for step in order.get("history", [])) or "-",
        )
        for scenario, order in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run_demo(gateway_url: str, data_dir: Path, out: TextIO, timeout: float = 60.0) -> int:
    """Seed, place the three orders, print their final states; 0 when each ended as expected."""
    deadline = time.monotonic() + timeout
    private_key = data_dir / "jwt-private.pem"
    admin = Gateway(gateway_url, sign_token(private_key, sub="demo-admin", roles=["admin"]), deadline)
    customers = [
        Gateway(gateway_url, sign_token(private_key, sub=sub, roles=["customer"]), deadline)
        for sub in ("demo-alice", "demo-bob", "demo-carol")
    ]
    try:
        print(f"seeding the catalog and inventory through {gateway_url} ...", file=out, flush=True)
        ids = seed(admin, deadline)
        for key, product_id in ids.items():
            name, price, units = PRODUCTS[key]
            print(f"  {name:<15} {product_id}  {price / 100:.2f} EUR, {units} in stock", file=out)
        print("placing three orders ...", file=out, flush=True)
        placed = [
            (scenario, customer, place(customer, scenario, ids))
            for scenario, customer in zip(SCENARIOS, customers, strict=True)
        ]
        results = [(scenario, final_state(customer, order_id, deadline)) for scenario, customer, order_id in placed]
    finally:
        for client in (admin, *customers):
            client.close()
    print("\n" + format_results(results) + "\n", file=out, flush=True)
    unexpected = [scenario.name for scenario, order in results if order.get("status") != scenario.expected]
    if unexpected:
        raise DemoFailed("not the expected final state: " + ", ".join(unexpected))
    print("every order reached its expected final state", file=out, flush=True)
    return 0
