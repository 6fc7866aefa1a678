"""Orders HTTP API: placing an order (with an Idempotency-Key), reading orders with their history."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated, Any, cast

import msgspec
import sqlalchemy as sa
from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from catalog_client import CatalogClient, NotFoundError, ServiceCallError
from flotilla_contracts.catalog import Money, Product
from flotilla_contracts.events import ORDERS_EVENTS, OrderPlaced
from flotilla_contracts.orders import Order, OrderCreate, OrderLine, OrderPage, OrderStep
from flotilla_http.errors import CircuitOpen, UpstreamError
from flotilla_kit.db import Database
from flotilla_kit.identity import CALLER_ID_HEADER, caller_roles
from flotilla_kit.openapi import answers, problem_responses
from flotilla_kit.pagination import (
    InvalidCursor,
    as_utc,
    decode_cursor,
    encode_cursor,
    parse_timestamp_key,
    timestamp_key,
)
from flotilla_kit.problems import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    Conflict,
    NotFound,
    Problem,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
    problem_details,
)
from flotilla_streams.outbox import Outbox
from orders import domain
from orders.idempotency import Claim, IdempotencyKeys, KeyInFlight, KeyReused, StoredAnswer
from orders.models import Order as OrderRow
from orders.models import OrderLine as LineRow
from orders.models import OrderStep as StepRow
from orders.saga import Saga, add_step

_orders = cast(sa.Table, OrderRow.__table__)
_lines = cast(sa.Table, LineRow.__table__)
_steps = cast(sa.Table, StepRow.__table__)
_encoder = msgspec.json.Encoder()

REPLAYED_HEADER = "Idempotent-Replayed"
MAX_CALLER_ID_LENGTH = 255  # the column's width
CATALOG_RETRY_AFTER_SECONDS = 1

_UNKNOWN_ORDER = {404: "No order with this id is visible to the caller (another customer's order is not)."}
_PLACING = {
    400: "The body breaks the schema, or the Idempotency-Key header is missing or not 1-255 visible ASCII characters.",
    409: "A request with this Idempotency-Key is still in progress; retry it later.",
    422: "An unknown or inactive product, prices in more than one currency, a product in two lines, "
    "or an Idempotency-Key already used with another body.",
    503: "The catalog (prices) or the database cannot be reached; `Retry-After` says when to retry.",
}


@answers({401: "No authenticated caller (the gateway sets one from a valid token)."})
def require_caller(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
    """A Litestar guard: 401 without the caller identity the gateway sets."""
    caller = connection.headers.get(CALLER_ID_HEADER)
    if not caller:
        raise Unauthorized("this operation needs an authenticated caller")
    if len(caller) > MAX_CALLER_ID_LENGTH:
        raise BadRequest(f"the caller id is longer than {MAX_CALLER_ID_LENGTH} characters")


def _caller(request: Request[Any, Any, Any]) -> str:
    return request.headers[CALLER_ID_HEADER]  # present: require_caller guards every route here


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
    guards = [require_caller]

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
        db: NamedDependency[Database],
        outbox: NamedDependency[Outbox],
        saga: NamedDependency[Saga],
        catalog: NamedDependency[CatalogClient],
        idempotency_keys: NamedDependency[IdempotencyKeys],
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
        except domain.InvalidIdempotencyKey as exc:
            raise BadRequest(str(exc)) from None
        # The body as decoded, encoded again: key order, spacing and defaults do not make another request.
        fingerprint = domain.fingerprint(_encoder.encode(data))
        try:
            claimed = await idempotency_keys.claim(_caller(request), key, fingerprint)
        except KeyReused:
            raise Unprocessable(
                "this Idempotency-Key was used for a request with another body; use a new key for a new order"
            ) from None
        except KeyInFlight:
            raise Conflict(
                "a request with this Idempotency-Key is still in progress; retry it later",
                headers={"Retry-After": "1"},
            ) from None
        if isinstance(claimed, StoredAnswer):
            return _answer(claimed, replayed=True)
        try:
            answer = await _place(request, db, outbox, saga, catalog, idempotency_keys, claimed, data)
        except Problem as exc:
            if not domain.stores_answer(exc.status):
                await idempotency_keys.release(claimed)
            raise
        except BaseException:
            await idempotency_keys.release(claimed)
            raise
        return _answer(answer, replayed=False)

    @get("/{order_id:uuid}", responses=problem_responses(_UNKNOWN_ORDER))
    async def get_order(
        self, request: Request[Any, Any, Any], db: NamedDependency[Database], order_id: FromPath[uuid.UUID]
    ) -> Order:
        """An order with its status and the history of its saga; a customer sees only their own."""
        query = sa.select(_orders).where(_orders.c.id == order_id)
        if "admin" not in caller_roles(request):
            query = query.where(_orders.c.customer_id == _caller(request))
        async with db.reader() as session:
            row = (await session.execute(query)).first()
            if row is None:
                raise NotFound(f"no order with id {order_id}")
            orders = await _with_details(session, [row])
        return orders[0]

    @get("/")
    async def list_orders(
        self,
        request: Request[Any, Any, Any],
        db: NamedDependency[Database],
        limit: Annotated[int, QueryParameter(ge=1, le=100, description="page size")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
    ) -> OrderPage:
        """The caller's orders, newest first; page through with `cursor`."""
        query = (
            sa.select(_orders)
            .where(_orders.c.customer_id == _caller(request))
            .order_by(_orders.c.created_at.desc(), _orders.c.id.desc())
            .limit(limit + 1)
        )
        if cursor:
            try:
                created_key, id_key = decode_cursor(cursor, arity=2)
                after_created, after_id = parse_timestamp_key(created_key), uuid.UUID(str(id_key))
            except (InvalidCursor, ValueError):
                raise BadRequest(f"invalid cursor {cursor!r}") from None
            query = query.where(
                sa.or_(
                    _orders.c.created_at < after_created,
                    sa.and_(_orders.c.created_at == after_created, _orders.c.id < after_id),
                )
            )
        async with db.reader() as session:
            rows = (await session.execute(query)).all()
            items = await _with_details(session, rows[:limit])
        last = items[-1] if len(rows) > limit else None
        next_cursor = encode_cursor(timestamp_key(last.created_at), str(last.id)) if last else None
        return OrderPage(items=items, next_cursor=next_cursor)


async def _place(
    request: Request[Any, Any, Any],
    db: Database,
    outbox: Outbox,
    saga: Saga,
    catalog: CatalogClient,
    keys: IdempotencyKeys,
    claim: Claim,
    data: OrderCreate,
) -> StoredAnswer:
    products = await _products(catalog, [line.product_id for line in data.lines])
    try:
        lines = domain.priced_lines(data.lines, products)
        total = domain.order_total(lines)
    except domain.OrderRuleError as exc:
        # Kept for replays like a success: the request was understood and answered (Stripe does the same).
        problem = problem_details(422, instance=request.url.path, type_name=Unprocessable.type_name, detail=str(exc))
        answer = StoredAnswer(422, _encoder.encode(problem), {"content-type": PROBLEM_MEDIA_TYPE})
        async with db.transaction() as session:
            if not await keys.store(session, claim, answer):
                raise _claim_lost() from None
        return answer
    order_id = uuid.uuid4()
    now = saga.clock()
    deadline = domain.step_deadline(now, saga.step_timeout_seconds, "awaiting_stock")
    placed = OrderStep(step="placed", at=now, detail=f"{len(lines)} line(s); stock requested")
    order = Order(
        id=order_id,
        customer_id=claim.caller_id,
        status="awaiting_stock",
        lines=lines,
        total=total,
        step_deadline=deadline,
        history=[placed],
        created_at=now,
        updated_at=now,
    )
    answer = StoredAnswer(
        201, _encoder.encode(order), {"content-type": "application/json", "location": f"/orders/{order_id}"}
    )
    async with db.transaction() as session:
        await session.execute(
            _orders.insert().values(
                id=order_id,
                customer_id=claim.caller_id,
                status=order.status,
                total_amount=total.amount,
                currency=total.currency,
                card_token=data.card_token,
                cancel_reason=None,
                step_deadline=deadline,
                created_at=now,
                updated_at=now,
            )
        )
        await session.execute(
            _lines.insert(),
            [
                {
                    "order_id": order_id,
                    "line_no": number,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "quantity": line.quantity,
                    "unit_price_amount": line.unit_price.amount,
                    "currency": line.unit_price.currency,
                }
                for number, line in enumerate(lines, start=1)
            ],
        )
        await add_step(session, order_id, placed.step, placed.detail, now)
        await outbox.add(
            session,
            ORDERS_EVENTS,
            OrderPlaced(order_id=order_id, customer_id=claim.caller_id, lines=lines, total=total),
        )
        if not await keys.store(session, claim, answer):
            raise _claim_lost()  # rolls the order back: the request that took the key over places it
    return answer


def _claim_lost() -> Conflict:
    return Conflict("this request's Idempotency-Key was taken over by a retry (it ran past the lock timeout)")


async def _products(catalog: CatalogClient, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Product]:
    """The catalog's products by id, those it knows; raises ServiceUnavailable when it cannot tell."""
    unique = list(dict.fromkeys(product_ids))
    results = await asyncio.gather(*(catalog.get_product(pid) for pid in unique), return_exceptions=True)
    found: dict[uuid.UUID, Product] = {}
    for product_id, result in zip(unique, results, strict=True):
        if isinstance(result, NotFoundError):
            continue  # unknown: domain.priced_lines names it
        if isinstance(result, UpstreamError | ServiceCallError):
            retry_after = (
                max(1, math.ceil(result.retry_after))
                if isinstance(result, CircuitOpen)
                else CATALOG_RETRY_AFTER_SECONDS
            )
            raise ServiceUnavailable(
                f"prices cannot be read from the catalog now ({result}); retry later",
                headers={"Retry-After": str(retry_after)},
            )
        if isinstance(result, BaseException):
            raise result
        found[product_id] = result
    return found


async def _with_details(session: AsyncSession, rows: Sequence[Any]) -> list[Order]:
    """The orders of ``rows`` with their lines and history (two queries for the whole page)."""
    if not rows:
        return []
    ids = [row.id for row in rows]
    lines: dict[uuid.UUID, list[OrderLine]] = defaultdict(list)
    for line in await session.execute(
        sa.select(_lines).where(_lines.c.order_id.in_(ids)).order_by(_lines.c.order_id, _lines.c.line_no)
    ):
        lines[line.order_id].append(
            OrderLine(
                product_id=line.product_id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=Money(line.unit_price_amount, line.currency),
            )
        )
    history: dict[uuid.UUID, list[OrderStep]] = defaultdict(list)
    for step in await session.execute(sa.select(_steps).where(_steps.c.order_id.in_(ids)).order_by(_steps.c.id)):
        history[step.order_id].append(OrderStep(step=step.step, at=as_utc(step.at), detail=step.detail))
    return [
        Order(
            id=row.id,
            customer_id=row.customer_id,
            status=row.status,
            lines=lines[row.id],
            total=Money(row.total_amount, row.currency),
            cancel_reason=row.cancel_reason,
            step_deadline=as_utc(row.step_deadline) if row.step_deadline else None,
            history=history[row.id],
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )
        for row in rows
    ]
