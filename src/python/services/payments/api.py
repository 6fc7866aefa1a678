"""Payments HTTP API: read only, for operators and tests (payments are driven by events)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from flotilla_contracts.catalog import Money
from flotilla_contracts.payments import Payment, PaymentPage, PaymentStatus
from flotilla_kit.db import Database
from flotilla_kit.identity import require_role
from flotilla_kit.openapi import problem_responses
from flotilla_kit.pagination import InvalidCursor, as_utc, created_cursor, created_page
from flotilla_kit.problems import BadRequest, NotFound
from payments.models import Payment as PaymentRow

MAX_PAGE_SIZE = 200

_columns = PaymentRow.__table__.c
_select_payments = sa.select(PaymentRow.__table__)


def _to_payment(row: Any) -> Payment:
    return Payment(
        order_id=row.order_id,
        payment_id=row.id,
        status=row.status,
        amount=Money(row.amount, row.currency),
        reason=row.reason,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class PaymentController(Controller):
    path = "/payments"
    tags = ["payments"]
    guards = [require_role("admin")]

    @get("/{order_id:uuid}", responses=problem_responses({404: "No payment has been recorded for this order."}))
    async def get_payment(self, db: NamedDependency[Database], order_id: FromPath[uuid.UUID]) -> Payment:
        """The one payment of an order (captured, declined, refunded, or cancelled before it was asked for)."""
        row = await db.fetch_one(_select_payments.where(_columns.order_id == order_id))
        if row is None:
            raise NotFound(f"no payment for order {order_id}")
        return _to_payment(row)

    @get("/")
    async def list_payments(
        self,
        db: NamedDependency[Database],
        status: Annotated[PaymentStatus | None, QueryParameter(description="only payments in this status")] = None,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="page size")] = 50,
    ) -> PaymentPage:
        """Payments in the order they were recorded; page through with `cursor`."""
        try:
            query = created_page(_select_payments, _columns.created_at, _columns.id, cursor, limit)
        except InvalidCursor as exc:
            raise BadRequest(str(exc)) from None
        if status is not None:
            query = query.where(_columns.status == status)
        rows = await db.fetch_all(query)
        items = [_to_payment(row) for row in rows[:limit]]
        next_cursor = created_cursor(items[-1].created_at, items[-1].payment_id) if len(rows) > limit else None
        return PaymentPage(items=items, next_cursor=next_cursor)
