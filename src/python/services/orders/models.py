"""The orders service's tables (its own database; no other service reads them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    """An order and the state of its saga (the state is here, so a restart resumes every saga)."""

    __tablename__ = "orders"
    __table_args__ = (
        # The caller's orders, newest first (keyset pagination on created_at, id).
        Index("ix_orders_customer_created", "customer_id", "created_at", "id"),
        # The sweeper's search for overdue steps; final orders have no deadline.
        Index("ix_orders_step_deadline", "step_deadline"),
        # The operators' views of every customer's orders, newest first: all, or by saga state.
        Index("ix_orders_created", "created_at", "id"),
        Index("ix_orders_status_created", "status", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    total_amount: Mapped[int] = mapped_column(BigInteger)  # minor units
    currency: Mapped[str] = mapped_column(String(3))
    card_token: Mapped[str] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    step_deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OrderLine(Base):
    __tablename__ = "order_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("orders.id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_amount: Mapped[int] = mapped_column(BigInteger)  # the catalog's price at order time
    currency: Mapped[str] = mapped_column(String(3))


class OrderStep(Base):
    """One entry of an order's history, in the order written."""

    __tablename__ = "order_steps"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("orders.id"), index=True)
    step: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """A caller's Idempotency-Key: claimed while its request runs, then holding the first answer."""

    __tablename__ = "idempotency_keys"

    caller_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical request body
    state: Mapped[str] = mapped_column(String(16))  # "in_flight" or "done"
    # Who holds the claim: only that request may store its answer (a taken-over claim gets a new one).
    claim_token: Mapped[str] = mapped_column(String(36))
    locked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[str | None] = mapped_column(Text)  # JSON object
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
