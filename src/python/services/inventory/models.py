"""The inventory's tables (its own database; no other service reads them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Stock(Base):
    """Units of one product: ``on_hand`` counted, ``reserved`` of them held for orders in flight."""

    __tablename__ = "stock"
    # The database holds the invariants too, whatever a bug in the code might try.
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="ck_stock_on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="ck_stock_reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="ck_stock_reserved_within_on_hand"),
    )

    product_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    version: Mapped[int] = mapped_column(Integer)  # bumped on every change
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StockMovement(Base):
    """One change of a product's units on hand: an admin's set or adjustment, or an order's commit."""

    __tablename__ = "stock_movements"
    # Keyset pages of one product's movements, newest first.
    __table_args__ = (Index("ix_stock_movements_product_id_id", "product_id", "id"),)

    # Increasing ids order the movements; SQLite autoincrements only an INTEGER primary key.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    delta: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Reservation(Base):
    """What inventory did for one order. One row per order, whatever its status: the primary key is
    what makes two consumers acting on one order at once unable to both act."""

    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint(
            "status IN ('reserved', 'rejected', 'released', 'committed')", name="ck_reservations_status_known"
        ),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReservationLine(Base):
    """Units of one product held (or once held) for an order; one row per product (lines summed)."""

    __tablename__ = "reservation_lines"

    order_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("reservations.order_id", name="fk_reservation_lines_order_id"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
