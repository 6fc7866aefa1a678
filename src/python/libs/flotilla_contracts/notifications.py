"""The notifications service's HTTP API (read only: notifications are recorded from events)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

NotificationKind = Literal["order_confirmed", "order_cancelled"]


class Notification(msgspec.Struct, kw_only=True, frozen=True):
    """What would have been sent to a customer: one per order and outcome."""

    id: uuid.UUID
    order_id: uuid.UUID
    customer_id: str
    kind: NotificationKind
    message: str
    created_at: datetime


class NotificationPage(msgspec.Struct, kw_only=True, frozen=True):
    items: list[Notification]
    next_cursor: str | None = None
