"""CatalogClient against a real catalog served over loopback, found through a static resolver."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from catalog_client import CatalogClient, NotFoundError, ServiceCallError
from flotilla_contracts.catalog import Money, Product
from flotilla_discovery.balancer import Balancer
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_http.client import HttpClient
from flotilla_kit.testing.processes import ServiceProcess, running_service

ADMIN = {"x-caller-id": "admin-1", "x-caller-roles": "admin"}  # what the gateway sets for an admin


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, redis_server) -> Iterator[ServiceProcess]:
    with running_service("catalog", redis_url=redis_server.url, data_dir=tmp_path_factory.mktemp("catalog")) as process:
        yield process


@pytest.fixture(scope="module")
def green_tea(catalog) -> dict:
    body = {"sku": "TEA-GREEN-250G", "name": "Green tea", "price": {"amount": 450, "currency": "EUR"}}
    response = httpx.post(f"{catalog.base_url}/products", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
async def client(catalog) -> AsyncIterator[CatalogClient]:
    async with HttpClient(Balancer(StaticResolver({"catalog": [catalog.base_url]}))) as http:
        yield CatalogClient(http)


async def test_get_product_returns_the_product_as_the_contract_type(client, green_tea):
    product = await client.get_product(uuid.UUID(green_tea["id"]))
    assert isinstance(product, Product)
    assert (product.id, product.sku, product.price, product.active) == (
        uuid.UUID(green_tea["id"]),
        "TEA-GREEN-250G",
        Money(450, "EUR"),
        True,
    )


async def test_an_unknown_id_raises_not_found_error(client, green_tea):
    unknown = uuid.uuid4()
    with pytest.raises(NotFoundError) as raised:
        await client.get_product(unknown)
    assert raised.value.status == 404 and str(unknown) in raised.value.detail


async def test_get_product_by_sku_matches_the_sku_in_any_case(client, green_tea):
    assert (await client.get_product_by_sku("tea-green-250g")).id == uuid.UUID(green_tea["id"])


@pytest.mark.parametrize("sku", ["NO-SUCH-SKU", "tea/green?x=1#y", "green tea"])
async def test_an_unknown_or_odd_sku_raises_not_found_error(client, green_tea, sku):
    with pytest.raises(NotFoundError):
        await client.get_product_by_sku(sku)


async def test_an_error_that_is_not_a_404_is_a_service_call_error_with_the_status(client, green_tea):
    with pytest.raises(ServiceCallError) as raised:
        await client.get("/products?limit=0", Product)
    assert raised.value.status == 400 and not isinstance(raised.value, NotFoundError)
