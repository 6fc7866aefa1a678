"""payments_client: the typed client of the payments service's HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from importlib import resources
from urllib.parse import urlencode

from flotilla_contracts.payments import Payment, PaymentPage, PaymentStatus
from flotilla_http.typed import NotFoundError, ServiceCallError, ServiceClient

# Read here, not through flotilla_kit: a client must not pull in the service runtime.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = ["NotFoundError", "PaymentsClient", "ServiceCallError"]


class PaymentsClient(ServiceClient):
    """Reads payments (admin only: pass the caller's identity headers, which the gateway sets)."""

    service = "payments"

    async def get_payment(self, order_id: uuid.UUID, *, headers: Mapping[str, str] | None = None) -> Payment:
        """The payment of an order; raises NotFoundError when none is recorded for it."""
        return await self.get(f"/payments/{order_id}", Payment, headers=headers)

    async def list_payments(
        self,
        *,
        status: PaymentStatus | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> PaymentPage:
        """A page of payments in the order they were recorded; pass ``next_cursor`` on for the next."""
        filters = (("status", status), ("cursor", cursor), ("limit", limit))
        query = {name: str(value) for name, value in filters if value is not None}
        path = f"/payments?{urlencode(query)}" if query else "/payments"
        return await self.get(path, PaymentPage, headers=headers)
