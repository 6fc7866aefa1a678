"""Orders flowing through the gateway while a test breaks something, and the counts that judge the outcome.

``OrderFlow`` places orders from a background thread until it is stopped, keeping every answer.
``Outcome`` counts what the platform did for a set of orders, from its APIs and its streams: final
states, reservations, payments, notifications, and the distinct events per order and type (a
duplicate effect shows there as a second event id, whatever the database's constraints hide).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from e2e.shop import new_product, place_order
from stack.runner import Platform

from flotilla_contracts.events import INVENTORY_EVENTS, ORDERS_EVENTS, PAYMENTS_EVENTS
from flotilla_contracts.orders import FINAL_STATUSES
from flotilla_streams.envelope import ENVELOPE_FIELD, decode


@dataclass
class OrderFlow:
    """Places an order of one unit of ``product`` every ``pace`` seconds until stopped.

    Answers other than 201 are kept by status (an outage may refuse orders, with a problem
    document); a transport error or an answer that is no problem document is kept apart, and the
    tests refuse those.
    """

    platform: Platform
    product: str
    pace: float = 0.05
    accepted: list[str] = field(default_factory=list)
    refused: Counter[int] = field(default_factory=Counter)
    unanswered: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def __enter__(self) -> OrderFlow:
        self._thread = threading.Thread(target=self._run, name="order flow", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def wait_accepted(self, count: int, timeout: float = 60.0) -> None:
        """Until ``count`` orders in all have been accepted."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.accepted) >= count or self._stop.is_set(), timeout):
                raise TimeoutError(f"{count} orders accepted not reached within {timeout}s: {self.summary()}")

    def summary(self) -> str:
        return f"{len(self.accepted)} accepted, refused {dict(self.refused)}, {len(self.unanswered)} unanswered"

    def _run(self) -> None:
        with self.platform.client("customer", sub=f"flow-{uuid.uuid4().hex[:8]}") as customer:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = place_order(customer, [(self.product, 1)])
                except httpx.HTTPError as exc:
                    self.unanswered.append(f"{type(exc).__name__}: {exc}")
                else:
                    with self._changed:
                        if response.status_code == 201:
                            self.accepted.append(response.json()["id"])
                        elif response.headers.get("content-type", "").startswith("application/problem+json"):
                            self.refused[response.status_code] += 1
                        else:
                            self.unanswered.append(f"{response.status_code} without a problem document")
                        self._changed.notify_all()
                self._stop.wait(max(0.0, self.pace - (time.monotonic() - started)))


def stocked_product(admin: httpx.Client, units: int = 10_000) -> str:
    return new_product(admin, price=300, stock=units)


@dataclass
class Outcome:
    """What the platform did for ``orders``, counted."""

    states: Counter[str]
    reservations: Counter[str]
    payments: Counter[str]
    notifications: Counter[int]  # notifications per order -> orders
    events_per_order: Counter[tuple[str, int]]  # (event type, distinct ids for one order) -> orders

    def effects_once(self) -> bool:
        """No order has two events of one type: nothing reserved, captured or confirmed twice."""
        return all(count == 1 for _, count in self.events_per_order)

    def assert_all_confirmed_once(self, count: int) -> None:
        """All ``count`` orders confirmed: each reserved, captured and notified, and nothing twice."""
        assert self.states == {"confirmed": count}, self
        assert self.reservations == {"committed": count}, self
        assert self.payments == {"captured": count}, self
        assert self.notifications == {1: count}, self
        assert self.effects_once(), self.events_per_order


def final_states(admin: httpx.Client, orders: list[str], timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    """Every order of ``orders`` once its saga ended; TimeoutError naming those still open."""
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while True:
        for order_id in orders:
            if order_id in finished:
                continue
            response = admin.get(f"/api/orders/{order_id}")
            if response.status_code == 200 and response.json()["status"] in FINAL_STATUSES:
                finished[order_id] = response.json()
        open_orders = [o for o in orders if o not in finished]
        if not open_orders:
            return finished
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(open_orders)} of {len(orders)} orders not final within {timeout}s: {open_orders[:5]}"
            )
        time.sleep(0.2)


def outcome(platform: Platform, admin: httpx.Client, orders: list[str]) -> Outcome:
    """Counts for ``orders``, which must all be final (see ``final_states``), once every group has
    drained: an order is confirmed before inventory commits its reservation and notifications sends
    its message (both follow OrderConfirmed), and a killed consumer's entries wait for their reclaim."""
    states = Counter(order["status"] for order in final_states(admin, orders).values())
    platform.wait_until_drained()
    reservations: Counter[str] = Counter()
    payments: Counter[str] = Counter()
    notifications: Counter[int] = Counter()
    for order_id in orders:
        reservation = admin.get(f"/api/inventory/reservations/{order_id}")
        reservations[reservation.json()["status"] if reservation.status_code == 200 else "none"] += 1
        payment = admin.get(f"/api/payments/{order_id}")
        payments[payment.json()["status"] if payment.status_code == 200 else "none"] += 1
        notified = admin.get("/api/notifications", params={"order_id": order_id})
        assert notified.status_code == 200, notified.text
        notifications[len(notified.json()["items"])] += 1
    return Outcome(states, reservations, payments, notifications, _events_per_order(platform, set(orders)))


def _events_per_order(platform: Platform, orders: set[str]) -> Counter[tuple[str, int]]:
    ids: dict[tuple[str, str], set[str]] = {}
    client = platform.redis()
    try:
        for stream in (ORDERS_EVENTS, INVENTORY_EVENTS, PAYMENTS_EVENTS):
            for _, fields in client.xrange(stream):
                envelope = decode(fields[ENVELOPE_FIELD])
                order_id = msgspec.json.decode(envelope.payload).get("order_id")
                if order_id in orders:
                    ids.setdefault((envelope.type, order_id), set()).add(envelope.id)
    finally:
        client.close()
    return Counter((event_type, len(event_ids)) for (event_type, _), event_ids in ids.items())
