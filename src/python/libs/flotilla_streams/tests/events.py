"""Events and handlers shared by the tests and the consumer process they start."""

from __future__ import annotations

import uuid

from flotilla_contracts.catalog import Money
from flotilla_contracts.events import OrderLine, OrderPlaced
from flotilla_streams.consumer import HandlerContext, Handlers
from flotilla_streams.tests.conftest import effects

STREAM = "orders.events"


def order(n: int = 0) -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.UUID(int=n),
        customer_id=f"c-{n}",
        lines=[OrderLine(product_id=uuid.UUID(int=1), sku="TEA-1", quantity=1 + n % 3, unit_price=Money(450, "EUR"))],
        total=Money(450 * (1 + n % 3), "EUR"),
    )


def recording_handlers() -> Handlers[OrderPlaced]:
    """Handlers that record each handled event as a row of the ``effects`` table."""
    handlers: Handlers[OrderPlaced] = Handlers()

    @handlers.on(OrderPlaced)
    async def record(event: OrderPlaced, ctx: HandlerContext) -> None:
        assert ctx.session is not None
        await ctx.session.execute(effects.insert().values(event_id=ctx.envelope.id, order_id=str(event.order_id)))

    return handlers
