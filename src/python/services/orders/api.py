"""Orders HTTP API: placing an order (with an Idempotency-Key), reading orders with their history."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED

from flotilla_contracts.orders import Order, OrderCreate, OrderPage, OrderStatus, SagaCounts
from flotilla_kit.db import Database
from flotilla_kit.identity import ADMIN_ROLE, caller_id, caller_roles, require_caller, visible_customer
from flotilla_kit.openapi import problem_responses
from flotilla_kit.pagination import InvalidCursor
from flotilla_kit.problems import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable, Unprocessable
from orders import domain, reading
from orders.idempotency import KeyInFlight, KeyReused, StoredAnswer
from orders.placing import CatalogUnavailable, ClaimLost, Placement

REPLAYED_HEADER = "Idempotent-Replayed"
MAX_CALLER_ID_LENGTH = 255  # the column's width

_UNKNOWN_ORDER = {404: "No order with this id is visible to the caller (another customer's order is not)."}
_LISTING = {403: "A customer asked for another customer's orders."}
_ADMIN_ONLY = {403: "The caller is not an admin."}
_PLACING = {
    400: "The body breaks the schema, or the Idempotency-Key header is missing or not 1-255 visible ASCII characters.",
    409: "A request with this Idempotency-Key is still in progress; retry it later.",
    422: "An unknown or inactive product, prices in more than one currency, a product in two lines, "
    "or an Idempotency-Key already used with another body.",
    503: "The catalog (prices) or the database cannot be reached; `Retry-After` says when to retry.",
}


def _answer(stored: StoredAnswer, *, replayed: bool) -> Response[Any]:
    headers = {name: value for name, value in stored.headers.items() if name != "content-type"}
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    return Response(
        stored.body,
        status_code=stored.status,
        media_type=stored.headers.get("content-type", "application/json"),
        headers=headers,
    )


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]
    guards = [require_caller(max_length=MAX_CALLER_ID_LENGTH)]

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=problem_responses(_PLACING),
        response_headers=[
            ResponseHeader(name="Location", description="The order's path.", documentation_only=True),
            ResponseHeader(
                name=REPLAYED_HEADER,
                description="`true` on an answer replayed for a retry with the same Idempotency-Key and body.",
                documentation_only=True,
            ),
        ],
    )
    async def place_order(
        self,
        request: Request[Any, Any, Any],
        placement: NamedDependency[Placement],
        data: JSONBody[OrderCreate],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="A unique value per order (1-255 visible ASCII characters): a retry with the same "
                "key and body gets the first answer again, with `Idempotent-Replayed: true`.",
            ),
        ] = None,
    ) -> Response[Order]:
        """Place an order at the catalog's current prices; its saga reserves stock, then takes payment."""
        try:
            key = domain.check_idempotency_key(idempotency_key)
            answer, replayed = await placement.place(caller_id(request), key, data, path=request.url.path)
        except domain.InvalidIdempotencyKey as exc:
            raise BadRequest(str(exc)) from None
        except KeyReused:
            raise Unprocessable(
                "this Idempotency-Key was used for a request with another body; use a new key for a new order"
            ) from None
        except KeyInFlight:
            raise Conflict(
                "a request with this Idempotency-Key is still in progress; retry it later",
                headers={"Retry-After": "1"},
            ) from None
        except ClaimLost:
            raise Conflict(
                "this request's Idempotency-Key was taken over by a retry (it ran past the lock timeout)"
            ) from None
        except CatalogUnavailable as exc:
            raise ServiceUnavailable(f"{exc}; retry later", headers={"Retry-After": str(exc.retry_after)}) from None
        return _answer(answer, replayed=replayed)

    @get("/{order_id:uuid}", responses=problem_responses(_UNKNOWN_ORDER))
    async def get_order(
        self, request: Request[Any, Any, Any], db: NamedDependency[Database], order_id: FromPath[uuid.UUID]
    ) -> Order:
        """An order with its status and the history of its saga; a customer sees only their own."""
        visible = visible_customer(None, caller_id(request), caller_roles(request))
        order = await reading.find_order(db, order_id, customer_id=visible)
        if order is None:
            raise NotFound(f"no order with id {order_id}")
        return order

    @get("/", responses=problem_responses(_LISTING))
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[Database],
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="page size")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
        customer_id: Annotated[
            str | None,
            QueryParameter(
                min_length=1, max_length=MAX_CALLER_ID_LENGTH, description="whose orders (an admin's choice)"
            ),
        ] = None,
    ) -> OrderPage:
        """A customer's orders, newest first (the caller's own unless an admin names another); page with `cursor`."""
        caller = caller_id(request)
        customer = visible_customer(
            customer_id, caller, caller_roles(request), refusal="a customer lists only their own orders"
        )
        try:
            # A listing is one customer's: an admin who names no one lists their own.
            return await reading.customer_orders(db, customer or caller, limit=limit, cursor=cursor)
        except InvalidCursor:
            raise BadRequest(f"invalid cursor {cursor!r}") from None

    @get("/sagas", responses=problem_responses({**_ADMIN_ONLY, 400: "An invalid cursor."}))
    async def list_sagas(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[Database],
        placement: NamedDependency[Placement],
        status: Annotated[OrderStatus | None, QueryParameter(description="only orders in this state")] = None,
        stuck: Annotated[bool, QueryParameter(description="only orders waiting past their step's deadline")] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="page size")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
    ) -> OrderPage:
        """Every customer's orders, newest first, by saga state (an admin's view: the operators' console)."""
        _require_admin(request)
        try:
            now = placement.saga.clock()  # the clock of every deadline
            return await reading.sagas(db, status=status, stuck=stuck, now=now, limit=limit, cursor=cursor)
        except InvalidCursor:
            raise BadRequest(f"invalid cursor {cursor!r}") from None

    @get("/sagas/counts", responses=problem_responses(_ADMIN_ONLY))
    async def saga_counts(
        self, request: Request[Any, Any, Any], db: NamedDependency[Database], placement: NamedDependency[Placement]
    ) -> SagaCounts:
        """How many orders are in each saga state, and how many are stuck past a step's deadline."""
        _require_admin(request)
        return await reading.saga_counts(db, now=placement.saga.clock())


def _require_admin(request: Request[Any, Any, Any]) -> None:
    if ADMIN_ROLE not in caller_roles(request):
        raise Forbidden("only an admin sees every customer's orders")
