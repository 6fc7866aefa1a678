"""Notifications HTTP API: read only (notifications are recorded from events)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from flotilla_contracts.notifications import Notification, NotificationPage
from flotilla_kit.db import Database
from flotilla_kit.identity import UNAUTHENTICATED, caller_id, caller_roles, visible_customer
from flotilla_kit.openapi import problem_responses
from flotilla_kit.pagination import InvalidCursor, as_utc, created_cursor, created_page
from flotilla_kit.problems import BadRequest
from notifications.models import Notification as NotificationRow

MAX_PAGE_SIZE = 200
_CUSTOMER_ID = r"^[^\x00-\x1f\x7f]+$"

_columns = NotificationRow.__table__.c
_select_notifications = sa.select(NotificationRow.__table__)


def _to_notification(row: Any) -> Notification:
    return Notification(
        id=row.id,
        order_id=row.order_id,
        customer_id=row.customer_id,
        kind=row.kind,
        message=row.message,
        created_at=as_utc(row.created_at),
    )


class NotificationController(Controller):
    path = "/notifications"
    tags = ["notifications"]

    @get(
        "/",
        responses=problem_responses(
            {
                401: UNAUTHENTICATED,
                403: "A customer asked for another customer's notifications.",
            }
        ),
    )
    async def list_notifications(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[Database],
        order_id: Annotated[uuid.UUID | None, QueryParameter(description="only this order's")] = None,
        customer_id: Annotated[
            str | None,
            # No control characters: PostgreSQL text cannot hold a NUL, and the query would fail with a 500.
            QueryParameter(pattern=_CUSTOMER_ID, max_length=200, description="only this customer's (admin)"),
        ] = None,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE, description="page size")] = 50,
    ) -> NotificationPage:
        """Notifications in the order they were recorded: an admin sees all, a customer their own."""
        # Not a guard: guards run before the parameters are checked, and a bad parameter here has always
        # been a 400, caller or not.
        caller = caller_id(request, refusal="reading notifications needs an authenticated caller")
        customer = visible_customer(
            customer_id, caller, caller_roles(request), refusal="a customer can read only their own notifications"
        )
        try:
            query = created_page(_select_notifications, _columns.created_at, _columns.id, cursor, limit)
        except InvalidCursor as exc:
            raise BadRequest(str(exc)) from None
        if customer is not None:
            query = query.where(_columns.customer_id == customer)
        if order_id is not None:
            query = query.where(_columns.order_id == order_id)
        rows = await db.fetch_all(query)
        items = [_to_notification(row) for row in rows[:limit]]
        next_cursor = created_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return NotificationPage(items=items, next_cursor=next_cursor)
