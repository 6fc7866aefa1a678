"""inventory_client: the typed client of the inventory service's HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from importlib import resources

from flotilla_contracts.inventory import Reservation, StockAdjustment, StockLevel, StockSet
from flotilla_http.typed import NotFoundError, ServiceCallError, ServiceClient

# Read here, not through flotilla_kit: a client must not pull in the service runtime.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = ["InventoryClient", "NotFoundError", "ServiceCallError"]


class InventoryClient(ServiceClient):
    """Reads and changes stock in the inventory (through discovery and flotilla_http's resilience).

    Admin calls take ``headers``: the caller's identity to forward (``x-caller-id`` and
    ``x-caller-roles``, as the gateway set them); the inventory answers 401/403 without an admin.
    A change the stock rules refuse (below what is reserved, below zero) raises ServiceCallError
    with status 409 and the inventory's reason as ``detail``.
    """

    service = "inventory"

    async def get_stock(self, product_id: uuid.UUID) -> StockLevel:
        """The product's stock level; raises NotFoundError when the inventory has no stock row for it."""
        return await self.get(f"/stock/{product_id}", StockLevel)

    async def set_stock(
        self, product_id: uuid.UUID, on_hand: int, reason: str, *, headers: Mapping[str, str]
    ) -> StockLevel:
        """Set the counted units on hand (creating the product's stock row if needed); returns the new level."""
        body = StockSet(on_hand=on_hand, reason=reason)
        return await self.call("PUT", f"/stock/{product_id}", StockLevel, json=body, headers=headers)

    async def adjust_stock(
        self, product_id: uuid.UUID, delta: int, reason: str, *, headers: Mapping[str, str]
    ) -> StockLevel:
        """Add (``delta`` > 0) or remove units on hand; returns the new level. Not idempotent: the
        client resends it only when nothing reached the inventory (a connect error)."""
        body = StockAdjustment(delta=delta, reason=reason)
        return await self.call("POST", f"/stock/{product_id}/adjustments", StockLevel, json=body, headers=headers)

    async def get_reservation(self, order_id: uuid.UUID, *, headers: Mapping[str, str]) -> Reservation:
        """What the inventory holds (or held) for the order; raises NotFoundError when it has not seen it."""
        return await self.get(f"/reservations/{order_id}", Reservation, headers=headers)
