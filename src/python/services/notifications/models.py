"""The notifications table (its own database; no other service reads it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # One notification per order and outcome, however often (and under whatever event id) it is told.
        UniqueConstraint("order_id", "kind", name="uq_notifications_order_id_kind"),
        # Keyset pages by creation: all (admin), and a customer's own.
        Index("ix_notifications_created_at_id", "created_at", "id"),
        Index("ix_notifications_customer_id_created_at_id", "customer_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))  # flotilla_contracts.notifications.NotificationKind
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
