"""orders_client: the typed client of the orders service's HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from importlib import resources
from urllib.parse import urlencode

import msgspec

from flotilla_contracts.orders import Order, OrderCreate, OrderPage, OrderStatus, SagaCounts
from flotilla_http.typed import NotFoundError, ServiceCallError, ServiceClient

# Read here, not through flotilla_kit: a client must not pull in the service runtime.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = ["NotFoundError", "OrdersClient", "ServiceCallError"]


class OrdersClient(ServiceClient):
    """Places and reads orders (through discovery and flotilla_http's resilience).

    Every call takes ``headers``: the caller's identity to forward (``x-caller-id`` and
    ``x-caller-roles``, as the gateway set them); orders answers 401 without one, and shows a
    customer only their own orders.
    """

    service = "orders"

    async def place_order(self, order: OrderCreate, *, idempotency_key: str, headers: Mapping[str, str]) -> Order:
        """Place ``order``; its saga runs on (read its status with ``get_order``).

        ``idempotency_key`` (1-255 visible ASCII characters, unique per order) makes the call safe to
        repeat: a retry with the same key and order returns the first order, so this client retries
        it like a GET (timeouts included). Raises ServiceCallError with status 422 for an unknown or
        inactive product or a key used for another order, 409 while a request with the key is still
        in progress (retry later), 503 when orders cannot read prices.
        """
        response = await self.http.request(
            self.service_name,
            "POST",
            "/orders",
            json=order,
            headers={**headers, "Idempotency-Key": idempotency_key},
            timeout=self.timeout,
            idempotent=True,  # the key makes a repeat return the first answer, not a second order
        )
        if response.status != 201:
            raise self._error(response)
        try:
            return response.json(Order)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ServiceCallError(self.service_name, 502, f"answer does not fit Order: {exc}") from None

    async def get_order(self, order_id: uuid.UUID, *, headers: Mapping[str, str]) -> Order:
        """The order with its status and history; raises NotFoundError for an unknown id or another customer's order."""
        return await self.get(f"/orders/{order_id}", Order, headers=headers)

    async def list_orders(
        self,
        *,
        cursor: str | None = None,
        limit: int = 20,
        customer_id: str | None = None,
        headers: Mapping[str, str],
    ) -> OrderPage:
        """The caller's orders, newest first; pass the page's ``next_cursor`` as ``cursor`` for the next page.

        ``customer_id`` lists another customer's orders: for an admin only (ServiceCallError 403 otherwise).
        """
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        if customer_id is not None:
            params["customer_id"] = customer_id
        return await self.get(f"/orders?{urlencode(params)}", OrderPage, headers=headers)

    async def list_sagas(
        self,
        *,
        status: OrderStatus | None = None,
        stuck: bool = False,
        cursor: str | None = None,
        limit: int = 20,
        headers: Mapping[str, str],
    ) -> OrderPage:
        """Every customer's orders, newest first, in ``status`` if given, only those waiting past their
        step's deadline if ``stuck``: for an admin only (ServiceCallError 403 otherwise)."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if stuck:
            params["stuck"] = "true"
        if cursor:
            params["cursor"] = cursor
        return await self.get(f"/orders/sagas?{urlencode(params)}", OrderPage, headers=headers)

    async def saga_counts(self, *, headers: Mapping[str, str]) -> SagaCounts:
        """Orders per saga state and the stuck ones: for an admin only (ServiceCallError 403 otherwise)."""
        return await self.get("/orders/sagas/counts", SagaCounts, headers=headers)
