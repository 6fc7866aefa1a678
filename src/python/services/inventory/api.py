"""Inventory HTTP API: stock levels (public), admin changes kept as movements, reservations (admin)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from flotilla_contracts.inventory import Reservation, StockAdjustment, StockLevel, StockMovementPage, StockSet
from flotilla_kit.db import Database
from flotilla_kit.identity import require_role
from flotilla_kit.openapi import problem_responses
from flotilla_kit.pagination import InvalidCursor, decode_cursor, encode_cursor
from flotilla_kit.problems import BadRequest, Conflict, NotFound, Unprocessable
from inventory import domain, store
from inventory.domain import StockChange
from inventory.settings import InventorySettings

# The problems the inventory's own rules answer, for its document; the kit adds the rest (400, 401/403
# of the admin guard, 404 of a path naming nothing, 413, 415, 503).
_NO_STOCK = {404: "The product has no stock row (inventory has not heard of it, and no admin set its stock)."}
_BREAKS_A_STOCK_RULE = {
    409: "The change would take units on hand below zero, below what is reserved for orders, or above the limit."
}


class StockController(Controller):
    path = "/stock"
    tags = ["stock"]

    @get("/{product_id:uuid}", responses=problem_responses(_NO_STOCK))
    async def get_stock(self, db: NamedDependency[Database], product_id: FromPath[uuid.UUID]) -> StockLevel:
        """Units of the product that can still be ordered (``available``), on hand and reserved."""
        row = await db.fetch_one(store.select_stock(product_id))
        if row is None:
            raise NotFound(f"no stock for product {product_id}")
        return store.stock_level(row)

    @put("/{product_id:uuid}", guards=[require_role("admin")], responses=problem_responses(_BREAKS_A_STOCK_RULE))
    async def set_stock(
        self, db: NamedDependency[Database], product_id: FromPath[uuid.UUID], data: JSONBody[StockSet]
    ) -> StockLevel:
        """Set the counted units on hand (a product without a stock row gets one); recorded as a movement."""
        return await _change(
            db,
            product_id,
            lambda row: domain.check_set(on_hand=row.on_hand, reserved=row.reserved, new_on_hand=data.on_hand),
            data.reason,
        )

    @post(
        "/{product_id:uuid}/adjustments",
        guards=[require_role("admin")],
        status_code=200,
        responses=problem_responses({**_BREAKS_A_STOCK_RULE, 422: "The adjustment is of 0 units."}),
    )
    async def adjust_stock(
        self, db: NamedDependency[Database], product_id: FromPath[uuid.UUID], data: JSONBody[StockAdjustment]
    ) -> StockLevel:
        """Add units received (+) or remove units lost (-); recorded as a movement."""
        return await _change(
            db,
            product_id,
            lambda row: domain.check_adjustment(on_hand=row.on_hand, reserved=row.reserved, delta=data.delta),
            data.reason,
        )

    @get("/{product_id:uuid}/movements", guards=[require_role("admin")], responses=problem_responses(_NO_STOCK))
    async def list_movements(
        self,
        db: NamedDependency[Database],
        settings: NamedDependency[InventorySettings],
        product_id: FromPath[uuid.UUID],
        limit: Annotated[int, QueryParameter(ge=1, description="page size")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
    ) -> StockMovementPage:
        """The product's changes of units on hand, newest first; page through with ``cursor``."""
        if limit > settings.max_page_size:
            raise BadRequest(f"limit {limit} is above the largest page size, {settings.max_page_size}")
        before_id = _movement_cursor(cursor) if cursor else None
        if await db.fetch_one(store.select_stock(product_id)) is None:
            raise NotFound(f"no stock for product {product_id}")
        rows = await db.fetch_all(store.select_movements(product_id, before_id=before_id, limit=limit + 1))
        items = [store.to_movement(row) for row in rows[:limit]]
        return StockMovementPage(items=items, next_cursor=encode_cursor(items[-1].id) if len(rows) > limit else None)


class ReservationController(Controller):
    path = "/reservations"
    tags = ["reservations"]

    @get(
        "/{order_id:uuid}",
        guards=[require_role("admin")],
        responses=problem_responses({404: "Inventory has no reservation for this order (it has not seen it)."}),
    )
    async def get_reservation(self, db: NamedDependency[Database], order_id: FromPath[uuid.UUID]) -> Reservation:
        """What inventory holds, or held, for the order; a 'released' one with no lines is an order
        cancelled before its reservation."""
        async with db.reader() as session:  # the row and its lines from one snapshot
            row = (await session.execute(store.select_reservation(order_id))).first()
            if row is None:
                raise NotFound(f"no reservation for order {order_id}")
            lines = (await session.execute(store.select_reservation_lines(order_id))).all()
        return store.to_reservation(row, lines)


async def _change(db: Database, product_id: uuid.UUID, check: Callable[[Any], StockChange], reason: str) -> StockLevel:
    """Apply an admin's change to the product's stock row (made first if missing), locked: ``check``
    sees the units reserved at this moment, and no order can reserve between the check and the write."""
    now = datetime.now(UTC)
    try:
        async with db.transaction() as session:
            await store.ensure_stock(session, product_id, now)
            row = (await store.lock_stock(session, [product_id]))[product_id]
            change = check(row)
            if change.delta == 0:
                return store.stock_level(row)  # a count that confirms the figure: nothing moves
            await store.change_on_hand(session, product_id, change, reason=reason, now=now)
            updated = (await session.execute(store.select_stock(product_id))).one()
    except domain.StockRuleError as exc:
        raise Conflict(str(exc)) from None
    except domain.InvalidChange as exc:
        raise Unprocessable(str(exc)) from None
    return store.stock_level(updated)


def _movement_cursor(cursor: str) -> int:
    try:
        (after,) = decode_cursor(cursor, arity=1)
    except InvalidCursor as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(after, int):
        raise BadRequest(f"invalid cursor {cursor!r}")
    return after
