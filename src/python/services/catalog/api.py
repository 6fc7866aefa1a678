"""Catalog HTTP API: thin controllers over domain rules and the products table.

Every change publishes its events (domain.created_event, domain.change_events) to CATALOG_EVENTS
through the outbox, in the change's own transaction: an event exists exactly when its change does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from litestar import Controller, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED
from sqlalchemy.exc import IntegrityError

from catalog import domain, search, search_order
from catalog.models import Product as ProductRow
from catalog.reads import PageQuery, read_page, read_product_by_id, read_product_by_sku, select_product, to_product
from catalog.settings import CatalogSettings
from flotilla_contracts.catalog import Product, ProductCreate, ProductPage, ProductPatch
from flotilla_contracts.events import CATALOG_EVENTS
from flotilla_kit.db import Database
from flotilla_kit.identity import require_role
from flotilla_kit.openapi import problem_responses
from flotilla_kit.problems import BadRequest, Conflict, NotFound, Unprocessable
from flotilla_streams.outbox import Outbox

_columns = ProductRow.__table__.c

# The problems the catalog's own rules answer, for its document; the kit adds the rest (400, 401/403
# of the admin guard, 404 of a path naming nothing, 413, 415, 503).
_UNKNOWN_ID = {404: "No product has this id."}
_BREAKS_A_RULE = {
    422: "The body is well formed but breaks a catalog rule (a blank name, an unsupported currency, an empty patch)."
}


async def _fetch(session: Any, product_id: uuid.UUID, *, for_update: bool = False) -> Product | None:
    query = select_product(product_id)
    row = (await session.execute(query.with_for_update() if for_update else query)).first()
    return to_product(row) if row else None


class ProductController(Controller):
    path = "/products"
    tags = ["products"]

    @get("/{product_id:uuid}", responses=problem_responses(_UNKNOWN_ID))
    async def get_product(self, db: NamedDependency[Database], product_id: FromPath[uuid.UUID]) -> Product:
        product = await read_product_by_id(db, product_id)
        if product is None:
            raise NotFound(f"no product with id {product_id}")
        return product

    @get("/by-sku/{sku:str}", responses=problem_responses({404: "No product has this SKU."}))
    async def get_product_by_sku(self, db: NamedDependency[Database], sku: FromPath[str]) -> Product:
        normalized = domain.normalize_sku(sku)
        product = await read_product_by_sku(db, normalized) if domain.is_sku(sku) else None
        if product is None:
            raise NotFound(f"no product with SKU {normalized!r}")
        return product

    @get("/")
    async def list_products(
        self,
        db: NamedDependency[Database],
        settings: NamedDependency[CatalogSettings],
        limit: Annotated[int, QueryParameter(ge=1, description="page size")] = 20,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="next_cursor of the previous page")
        ] = None,
        q: Annotated[
            str | None,
            # No control characters: a NUL cannot be compared with PostgreSQL text (a 500 otherwise).
            QueryParameter(pattern=r"^[^\x00-\x1f\x7f]+$", max_length=100, description=search.SEMANTICS),
        ] = None,
        active: Annotated[bool | None, QueryParameter()] = None,
        currency: Annotated[str | None, QueryParameter(pattern=r"^[A-Z]{3}$")] = None,
        min_price: Annotated[int | None, QueryParameter(ge=0, description="minor units")] = None,
        max_price: Annotated[int | None, QueryParameter(ge=0, description="minor units")] = None,
    ) -> ProductPage:
        """Products ordered by SKU, filtered; page through with `cursor`."""
        if limit > settings.max_page_size:
            raise BadRequest(f"limit {limit} is above the largest page size, {settings.max_page_size}")
        try:
            domain.check_price_range(min_price, max_price)
            after_sku = domain.parse_sku_cursor(cursor) if cursor else None
        except domain.InvalidQuery as exc:
            raise BadRequest(str(exc)) from None
        products = await read_page(
            db,
            PageQuery(
                limit=limit,
                after_sku=after_sku,
                words=search.query_words(q) if q is not None else None,
                active=active,
                currency=currency,
                min_price=min_price,
                max_price=max_price,
            ),
        )
        items = products[:limit]
        next_cursor = domain.sku_cursor(items[-1].sku) if len(products) > limit else None
        return ProductPage(items=items, next_cursor=next_cursor)

    @post(
        "/",
        guards=[require_role("admin")],
        status_code=HTTP_201_CREATED,
        responses=problem_responses({409: "A product with this SKU (in any case) exists.", **_BREAKS_A_RULE}),
    )
    async def create_product(
        self, db: NamedDependency[Database], outbox: NamedDependency[Outbox], data: JSONBody[ProductCreate]
    ) -> Response[Product]:
        try:
            name = domain.clean_name(data.name)
            price = domain.check_price(data.price)
        except domain.CatalogRuleError as exc:
            raise Unprocessable(str(exc)) from None
        sku = domain.normalize_sku(data.sku)
        now = datetime.now(UTC)
        row = ProductRow(
            id=uuid.uuid4(),
            sku=sku,
            name=name,
            description=data.description,
            price_amount=price.amount,
            currency=price.currency,
            active=data.active,
            version=1,
            created_at=now,
            updated_at=now,
            search_document=search.search_document(sku, name, data.description),
        )
        product = Product(
            id=row.id,
            sku=sku,
            name=name,
            description=data.description,
            price=price,
            active=data.active,
            version=1,
            created_at=now,
            updated_at=now,
        )
        try:
            async with db.transaction() as session:
                if db.is_sqlite:  # its place in the SKU order, for the search index (catalog.search_order)
                    row.search_order = await search_order.order_key(session, sku)
                session.add(row)
                await outbox.add(session, CATALOG_EVENTS, domain.created_event(product))
        except IntegrityError:
            raise Conflict(f"a product with SKU {sku!r} already exists") from None
        return Response(product, status_code=HTTP_201_CREATED, headers={"Location": f"/products/{product.id}"})

    @patch(
        "/{product_id:uuid}",
        guards=[require_role("admin")],
        responses=problem_responses({**_UNKNOWN_ID, **_BREAKS_A_RULE}),
    )
    async def update_product(
        self,
        db: NamedDependency[Database],
        outbox: NamedDependency[Outbox],
        product_id: FromPath[uuid.UUID],
        data: JSONBody[ProductPatch],
    ) -> Product:
        try:
            changes = domain.changes_from_patch(data)
        except domain.CatalogRuleError as exc:
            raise Unprocessable(str(exc)) from None
        return await _update(db, outbox, product_id, changes)

    @post(
        "/{product_id:uuid}/deactivate",
        guards=[require_role("admin")],
        status_code=200,
        responses=problem_responses(_UNKNOWN_ID),
    )
    async def deactivate_product(
        self, db: NamedDependency[Database], outbox: NamedDependency[Outbox], product_id: FromPath[uuid.UUID]
    ) -> Product:
        """Hide a product from sale; idempotent (deactivating twice changes nothing the second time)."""
        return await _update(db, outbox, product_id, {"active": False})


async def _update(db: Database, outbox: Outbox, product_id: uuid.UUID, changes: dict[str, object]) -> Product:
    async with db.transaction() as session:
        # Locked until commit (PostgreSQL; SQLite's write lock is already held): a concurrent update
        # waits, so each event's previous price and version are the ones this change replaced.
        current = await _fetch(session, product_id, for_update=True)
        if current is None:
            raise NotFound(f"no product with id {product_id}")
        if all(_current_value(current, column) == value for column, value in changes.items()):
            return current  # nothing changes: no new version
        if "name" in changes or "description" in changes:
            changes["search_document"] = search.search_document(
                current.sku,
                str(changes.get("name", current.name)),
                str(changes.get("description", current.description)),
            )
        await session.execute(
            sa.update(ProductRow)
            .where(_columns.id == product_id)
            .values(**changes, version=_columns.version + 1, updated_at=datetime.now(UTC))
        )
        updated = await _fetch(session, product_id)
        assert updated is not None  # the row was read under the write lock a moment ago
        events = domain.change_events(current, updated)
        if events:
            await outbox.add_many(session, CATALOG_EVENTS, events)
    return updated


def _current_value(product: Product, column: str) -> object:
    if column == "price_amount":
        return product.price.amount
    if column == "currency":
        return product.price.currency
    return getattr(product, column)
