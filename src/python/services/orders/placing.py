"""Placing an order under an Idempotency-Key: claim the key, read the prices, then one transaction
with the order, its first step, OrderPlaced (outbox) and the key's answer.

The answer is stored in the order's transaction, by the request holding the claim only: a request
whose claim was taken over (it ran past the lock timeout) rolls its order back. A server-side
failure releases the key, so that a retry runs anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import msgspec
import sqlalchemy as sa
from litestar import Litestar

from catalog_client import CatalogClient, NotFoundError, ServiceCallError
from flotilla_contracts.catalog import Product
from flotilla_contracts.events import ORDERS_EVENTS, OrderPlaced
from flotilla_contracts.orders import Order, OrderCreate, OrderLine, OrderStep
from flotilla_http.errors import CircuitOpen, UpstreamError
from flotilla_kit import tracing
from flotilla_kit.app import Component
from flotilla_kit.db import Database
from flotilla_kit.problems import PROBLEM_MEDIA_TYPE, Unprocessable, problem_details
from flotilla_streams.outbox import Outbox
from orders import domain
from orders.idempotency import Claim, IdempotencyKeys, StoredAnswer
from orders.models import Order as OrderRow
from orders.models import OrderLine as LineRow
from orders.saga import Saga, add_step

_orders = cast(sa.Table, OrderRow.__table__)
_lines = cast(sa.Table, LineRow.__table__)
_encoder = msgspec.json.Encoder()
CATALOG_RETRY_AFTER_SECONDS = 1


# The span attribute that names the order a request placed (the console links an order to its trace by it).
ORDER_ID_ATTRIBUTE = "flotilla.order.id"


class CatalogUnavailable(Exception):
    """The catalog cannot tell the prices now (answered 503 with ``Retry-After``)."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ClaimLost(Exception):
    """This request ran past the lock timeout and a retry took its key over: its order was rolled back."""


class Placement:
    """Places orders; built once per app (``placement_component``)."""

    def __init__(self, db: Database, outbox: Outbox, saga: Saga, catalog: CatalogClient, keys: IdempotencyKeys):
        self.db = db
        self.outbox = outbox
        self.saga = saga
        self.catalog = catalog
        self.keys = keys

    async def place(self, caller_id: str, key: str, data: OrderCreate, *, path: str) -> tuple[StoredAnswer, bool]:
        """The answer to ``POST /orders`` and whether it is a replay of the key's first answer.

        Raises KeyReused, KeyInFlight (orders.idempotency), CatalogUnavailable, ClaimLost.
        """
        # The decoded body, encoded again: key order, spacing and defaults do not make another request.
        fingerprint = domain.fingerprint(_encoder.encode(data))
        # The prices are read while the key is claimed: the two round trips overlap. A retry that is
        # replayed or refused has read them for nothing (rare, and only a read).
        prices = asyncio.create_task(_products(self.catalog, [line.product_id for line in data.lines]))
        try:
            claimed = await self.keys.claim(caller_id, key, fingerprint)
        except BaseException:
            await _discard(prices)
            raise
        if isinstance(claimed, StoredAnswer):
            await _discard(prices)
            return claimed, True
        try:
            return await self._place(claimed, data, await prices, path), False
        except BaseException:
            # Guarded by the claim's token and state: it never frees another request's claim or a
            # stored answer (a lost claim, or a commit that failed after all, leave the key as it is).
            await self.keys.release(claimed)
            raise

    async def _place(
        self, claim: Claim, data: OrderCreate, products: dict[uuid.UUID, Product], path: str
    ) -> StoredAnswer:
        try:
            lines = domain.priced_lines(data.lines, products)
            total = domain.order_total(lines)
        except domain.OrderRuleError as exc:
            # Kept for replays like a success: the request was understood and answered (Stripe does the same).
            problem = problem_details(422, instance=path, type_name=Unprocessable.type_name, detail=str(exc))
            answer = StoredAnswer(422, _encoder.encode(problem), {"content-type": PROBLEM_MEDIA_TYPE})
            async with self.db.transaction() as session:
                if not await self.keys.store(session, claim, answer):
                    raise ClaimLost() from None
            return answer
        order_id = uuid.uuid4()
        tracing.annotate(ORDER_ID_ATTRIBUTE, str(order_id))  # the order's trace is found by its id
        now = self.saga.clock()
        deadline = domain.step_deadline(now, self.saga.step_timeout_seconds, "awaiting_stock")
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
        async with self.db.transaction() as session:
            await session.execute(
                _orders.insert().values(
                    id=order_id,
                    customer_id=claim.caller_id,
                    status=order.status,
                    total_amount=total.amount,
                    currency=total.currency,
                    card_token=data.card_token,
                    step_deadline=deadline,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.execute(_lines.insert(), _line_rows(order_id, lines))
            await add_step(session, order_id, placed.step, placed.detail, now)
            placed_event = OrderPlaced(order_id=order_id, customer_id=claim.caller_id, lines=lines, total=total)
            await self.outbox.add(session, ORDERS_EVENTS, placed_event)
            if not await self.keys.store(session, claim, answer):
                raise ClaimLost()  # rolls the order back: the request that took the key over places it
        return answer


def _line_rows(order_id: uuid.UUID, lines: Sequence[OrderLine]) -> list[dict[str, Any]]:
    return [
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
    ]


async def _products(catalog: CatalogClient, product_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Product]:
    """The catalog's products by id (concurrently), those it knows; raises CatalogUnavailable when it cannot tell."""
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
            raise CatalogUnavailable(f"prices cannot be read from the catalog now ({result})", retry_after=retry_after)
        if isinstance(result, BaseException):
            raise result
        found[product_id] = result
    return found


async def _discard(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)  # its outcome, error or not, is not wanted


def placement_component(outbox: Outbox, saga: Saga) -> Component:
    """Builds the app's Placement (``app.state.placement``) once its HTTP client is open (after service_calls)."""

    @contextlib.asynccontextmanager
    async def component(app: Litestar) -> AsyncIterator[None]:
        settings = app.state.settings
        keys = IdempotencyKeys(
            app.state.db,
            lock_timeout_seconds=settings.idempotency_lock_timeout_seconds,
            ttl_seconds=settings.idempotency_key_ttl_seconds,
            clock=saga.clock,
        )
        catalog = CatalogClient(app.state.http, timeout=settings.catalog_timeout_seconds)
        app.state.placement = Placement(app.state.db, outbox, saga, catalog, keys)
        yield

    return component
