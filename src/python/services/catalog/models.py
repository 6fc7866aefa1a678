"""The catalog's tables (its own database; no other service reads them)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    # Listings are ordered by SKU and filtered: each index puts an equality filter before the SKU,
    # so a filtered page is one range of one index, already in order (keyset pagination stays a
    # seek). The price index serves narrow price ranges (its SKU makes it covering for the sort).
    # The text search index is not a model: see catalog.search and revision 0003.
    __table_args__ = (
        Index("ix_products_active_sku", "active", "sku"),
        Index("ix_products_currency_sku", "currency", "sku"),
        Index("ix_products_price_sku", "price_amount", "sku"),
        Index("ix_products_search_order", "search_order", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    price_amount: Mapped[int] = mapped_column(BigInteger)  # minor units (cents)
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int] = mapped_column(Integer)  # bumped on every change
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The product's words for text search (catalog.search.search_document), written with the product.
    search_document: Mapped[str] = mapped_column(Text, server_default="")
    # SQLite: the product's place in the SKU order, its FTS5 rowid (catalog.search_order); NULL on PostgreSQL.
    search_order: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
