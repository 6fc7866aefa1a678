"""The inventory's reads and writes of its own tables, shared by the API and the event handlers.

Every function runs in the caller's session (its transaction). Locks are taken in one order,
reservation row first, then stock rows by ascending product id, so that concurrent transactions
of two instances on one PostgreSQL database never wait on each other in a cycle (SQLite has one
writer at a time: there, the locks are moot).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_contracts.inventory import Reservation, ReservedLine, StockLevel
from flotilla_contracts.inventory import StockMovement as StockMovementView
from flotilla_kit.pagination import as_utc
from inventory.domain import StockChange
from inventory.models import Reservation as ReservationRow
from inventory.models import ReservationLine, Stock, StockMovement

stock = cast(sa.Table, Stock.__table__)
movements = cast(sa.Table, StockMovement.__table__)
reservations = cast(sa.Table, ReservationRow.__table__)
reservation_lines = cast(sa.Table, ReservationLine.__table__)


class StockChangedUnderLock(RuntimeError):
    """A conditional update matched no row although the row was locked and checked: a bug, never
    expected. Raised so that the transaction rolls back (and an event handler is retried)."""


def _insert(session: AsyncSession, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(table)


# stock


def stock_level(row: Any) -> StockLevel:
    return StockLevel(
        product_id=row.product_id, available=row.on_hand - row.reserved, on_hand=row.on_hand, reserved=row.reserved
    )


def select_stock(product_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(stock).where(stock.c.product_id == product_id)


async def ensure_stock(session: AsyncSession, product_id: uuid.UUID, now: datetime) -> bool:
    """Give the product a stock row with nothing on hand unless it has one; returns whether it was created.

    Idempotent, and safe against a concurrent creation (an event and an admin at once)."""
    statement = (
        _insert(session, stock)
        .values(product_id=product_id, on_hand=0, reserved=0, version=1, updated_at=now)
        .on_conflict_do_nothing(index_elements=["product_id"])
        .returning(stock.c.product_id)
    )
    return (await session.execute(statement)).first() is not None


async def lock_stock(session: AsyncSession, product_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The stock rows of these products, locked for update in ascending product order (missing ones absent)."""
    ids = sorted(set(product_ids))
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(stock).where(stock.c.product_id.in_(ids)).order_by(stock.c.product_id).with_for_update()
    )
    return {row.product_id: row for row in rows}


async def change_on_hand(
    session: AsyncSession,
    product_id: uuid.UUID,
    change: StockChange,
    *,
    reason: str,
    now: datetime,
    order_id: uuid.UUID | None = None,
) -> None:
    """Apply a checked change of units on hand (row locked by the caller) and record it as a movement."""
    await session.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id)
        .values(on_hand=change.on_hand_after, version=stock.c.version + 1, updated_at=now)
    )
    await _record_movement(session, product_id, change, reason=reason, now=now, order_id=order_id)


async def _record_movement(
    session: AsyncSession,
    product_id: uuid.UUID,
    change: StockChange,
    *,
    reason: str,
    now: datetime,
    order_id: uuid.UUID | None,
) -> None:
    await session.execute(
        movements.insert().values(
            product_id=product_id,
            delta=change.delta,
            on_hand_after=change.on_hand_after,
            reason=reason,
            order_id=order_id,
            at=now,
        )
    )


async def reserve_units(session: AsyncSession, product_id: uuid.UUID, quantity: int, now: datetime) -> None:
    """Hold ``quantity`` units, only if that many are available: the database checks the row as it
    updates it, so stock is never oversold whatever runs at once."""
    result = await session.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id, stock.c.on_hand - stock.c.reserved >= quantity)
        .values(reserved=stock.c.reserved + quantity, version=stock.c.version + 1, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StockChangedUnderLock(f"cannot reserve {quantity} units of {product_id}: fewer are available")


async def release_units(session: AsyncSession, product_id: uuid.UUID, quantity: int, now: datetime) -> None:
    """Give back ``quantity`` held units (they stay on hand)."""
    result = await session.execute(
        sa.update(stock)
        .where(stock.c.product_id == product_id, stock.c.reserved >= quantity)
        .values(reserved=stock.c.reserved - quantity, version=stock.c.version + 1, updated_at=now)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise StockChangedUnderLock(f"cannot release {quantity} units of {product_id}: fewer are reserved")


async def commit_units(
    session: AsyncSession, product_id: uuid.UUID, quantity: int, *, order_id: uuid.UUID, now: datetime
) -> None:
    """Held units leave with an order: off ``reserved`` and off ``on_hand``, recorded as a movement."""
    row = (
        await session.execute(
            sa.update(stock)
            .where(stock.c.product_id == product_id, stock.c.reserved >= quantity)
            .values(
                on_hand=stock.c.on_hand - quantity,
                reserved=stock.c.reserved - quantity,
                version=stock.c.version + 1,
                updated_at=now,
            )
            .returning(stock.c.on_hand)
        )
    ).first()
    if row is None:
        raise StockChangedUnderLock(f"cannot commit {quantity} units of {product_id}: fewer are reserved")
    change = StockChange(on_hand_after=row.on_hand, delta=-quantity)
    await _record_movement(session, product_id, change, reason=f"order {order_id}", now=now, order_id=order_id)


def to_movement(row: Any) -> StockMovementView:
    return StockMovementView(
        id=row.id,
        product_id=row.product_id,
        delta=row.delta,
        on_hand_after=row.on_hand_after,
        reason=row.reason,
        order_id=row.order_id,
        at=as_utc(row.at),
    )


def select_movements(product_id: uuid.UUID, *, before_id: int | None, limit: int) -> sa.Select[Any]:
    """A page of a product's movements, newest first."""
    query = sa.select(movements).where(movements.c.product_id == product_id)
    if before_id is not None:
        query = query.where(movements.c.id < before_id)
    return query.order_by(movements.c.id.desc()).limit(limit)


# reservations


async def claim_reservation(
    session: AsyncSession, order_id: uuid.UUID, *, status: str, reason: str, now: datetime
) -> bool:
    """Record the order's reservation row unless it has one; returns whether this call recorded it.

    The order id is the primary key: of two transactions claiming one order at once, one records it
    and the other (on PostgreSQL, after waiting for the first to commit) finds it taken."""
    statement = (
        _insert(session, reservations)
        .values(order_id=order_id, status=status, reason=reason, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["order_id"])
        .returning(reservations.c.order_id)
    )
    return (await session.execute(statement)).first() is not None


async def lock_reservation(session: AsyncSession, order_id: uuid.UUID) -> Any | None:
    return (
        await session.execute(sa.select(reservations).where(reservations.c.order_id == order_id).with_for_update())
    ).first()


async def set_reservation_status(
    session: AsyncSession, order_id: uuid.UUID, *, status: str, reason: str, now: datetime
) -> None:
    await session.execute(
        sa.update(reservations)
        .where(reservations.c.order_id == order_id)
        .values(status=status, reason=reason, updated_at=now)
    )


async def add_reservation_lines(session: AsyncSession, order_id: uuid.UUID, units: Mapping[uuid.UUID, int]) -> None:
    if units:
        await session.execute(
            reservation_lines.insert(),
            [
                {"order_id": order_id, "product_id": product, "quantity": quantity}
                for product, quantity in units.items()
            ],
        )


def select_reservation_lines(order_id: uuid.UUID) -> sa.Select[Any]:
    """An order's held units, by ascending product id (the lock order)."""
    return (
        sa.select(reservation_lines.c.product_id, reservation_lines.c.quantity)
        .where(reservation_lines.c.order_id == order_id)
        .order_by(reservation_lines.c.product_id)
    )


async def reservation_units(session: AsyncSession, order_id: uuid.UUID) -> dict[uuid.UUID, int]:
    rows = await session.execute(select_reservation_lines(order_id))
    return {row.product_id: row.quantity for row in rows}


def select_reservation(order_id: uuid.UUID) -> sa.Select[Any]:
    return sa.select(reservations).where(reservations.c.order_id == order_id)


def to_reservation(row: Any, lines: Iterable[Any]) -> Reservation:
    return Reservation(
        order_id=row.order_id,
        status=row.status,
        lines=[ReservedLine(product_id=line.product_id, quantity=line.quantity) for line in lines],
        reason=row.reason,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )
