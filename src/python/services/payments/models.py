"""The payments table (its own database; no other service reads it)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Payment(Base):
    """One row per order: what the provider did with its payment, or that the order was cancelled first."""

    __tablename__ = "payments"
    __table_args__ = (
        # Captures are idempotent per order: a second insert for an order fails its transaction,
        # also when two instances race on one database.
        UniqueConstraint("order_id", name="uq_payments_order_id"),
        # Keyset pages by creation, with and without a status filter.
        Index("ix_payments_created_at_id", "created_at", "id"),
        Index("ix_payments_status_created_at_id", "status", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # the payment_id
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    customer_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))  # flotilla_contracts.payments.PaymentStatus
    amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(Text)  # why it was declined or cancelled; "" otherwise
    # When a PaymentRequested was answered; null for an order cancelled before it asked (such a row
    # answers a late request once, with PaymentDeclined "order cancelled").
    requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
