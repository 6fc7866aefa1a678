"""The merged OpenAPI document: what the gateway itself answers, on every operation it serves."""

import uuid

import pytest
from litestar.testing import TestClient

from flotilla_discovery.balancer import Balancer
from flotilla_discovery.static_resolver import StaticResolver
from flotilla_http.client import HttpClient
from flotilla_kit.testing.redis import start_redis
from gateway.app import create_app
from gateway.openapi import MergedOpenApi, UnprotectedEndpoint
from gateway.policy import EdgePolicy
from gateway.settings import GatewaySettings

OPERATION = {"responses": {"200": {"description": "OK"}}}


def _merged(own_paths, composed):
    return MergedOpenApi(
        HttpClient(Balancer(StaticResolver({}))),
        [],
        version="1",
        cache_seconds=0,
        timeout=1,
        own_document={"paths": own_paths},
        composed=composed,
    )


async def test_an_endpoint_of_ours_under_api_without_a_policy_fails_at_start_up():
    with pytest.raises(UnprotectedEndpoint, match="/api/forgotten/x"):
        _merged({"/api/forgotten/x": {"get": OPERATION}}, {"/api/storefront/": EdgePolicy("public", "default")})


async def test_composed_operations_document_the_policy_that_protects_them():
    merged = _merged(
        {"/api/storefront/x": {"get": OPERATION}, "/openapi.json": {"get": OPERATION}},
        {"/api/storefront/": EdgePolicy("role:admin", "strict")},
    )
    document = await merged.document()
    responses = document["paths"]["/api/storefront/x"]["get"]["responses"]
    assert "'admin'" in responses["403"]["description"] and "'strict'" in responses["429"]["description"]
    assert document["paths"]["/openapi.json"]["get"]["responses"] == OPERATION["responses"]  # not part of the API


@pytest.fixture
def client(public_key_file):
    server = start_redis()
    settings = GatewaySettings(service_name="gateway", redis_url=server.url, jwt_public_key_file=str(public_key_file))
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        server.close()


def test_a_method_that_takes_no_body_documents_the_413_the_edge_answers_for_one(client):
    path = "/api/storefront/products/{product_id}"
    responses = client.get("/openapi.json").json()["paths"][path]["get"]["responses"]
    assert "does not take" in responses["413"]["description"]
    answer = client.request("GET", f"/api/storefront/products/{uuid.uuid4()}", content=b"{}")
    assert answer.status_code == 413
