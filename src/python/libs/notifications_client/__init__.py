"""notifications_client: the typed client of the notifications service's HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from importlib import resources
from urllib.parse import urlencode

from flotilla_contracts.notifications import NotificationPage
from flotilla_http.typed import NotFoundError, ServiceCallError, ServiceClient

# Read here, not through flotilla_kit: a client must not pull in the service runtime.
__version__ = (resources.files(__name__) / "VERSION").read_text().strip()

__all__ = ["NotFoundError", "NotificationsClient", "ServiceCallError"]


class NotificationsClient(ServiceClient):
    """Reads notifications: an admin caller sees all, a customer their own (pass the caller's headers)."""

    service = "notifications"

    async def list_notifications(
        self,
        *,
        order_id: uuid.UUID | None = None,
        customer_id: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> NotificationPage:
        """A page of notifications in the order they were recorded; pass ``next_cursor`` on for the next.

        Raises ServiceCallError with status 401 without a caller, 403 when a customer names another.
        """
        filters = (("order_id", order_id), ("customer_id", customer_id), ("cursor", cursor), ("limit", limit))
        query = {name: str(value) for name, value in filters if value is not None}
        path = f"/notifications?{urlencode(query)}" if query else "/notifications"
        return await self.get(path, NotificationPage, headers=headers)
