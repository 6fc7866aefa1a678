"""Assertions shared by the end-to-end tests."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem with ``status``; return its body."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def create_product(http: httpx.Client, admin_token: str, name: str) -> dict[str, Any]:
    """A new product (with a unique SKU) created through ``http`` by an admin; returns it."""
    body = {"sku": f"{name}-{uuid.uuid4().hex[:6]}", "name": name, "price": {"amount": 1, "currency": "EUR"}}
    response = http.post("/api/catalog/products", json=body, headers={"authorization": f"Bearer {admin_token}"})
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product
