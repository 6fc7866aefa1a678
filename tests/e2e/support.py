"""Assertions and raw requests shared by the end-to-end tests."""

from __future__ import annotations

import socket
import uuid
from typing import Any, NamedTuple

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


class RawAnswer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def send_raw(
    base_url: str,
    request_line: str,
    *,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawAnswer:
    """Send one HTTP/1.1 request with ``request_line`` byte for byte (``GET http://evil/x HTTP/1.1``, or a
    path with ``%2f`` no client library would leave alone) on a raw socket; read the answer to EOF.
    ``body`` is sent as it is: with ``transfer-encoding: chunked`` in ``headers``, its chunk framing too.
    ``headers`` as pairs may repeat a name, as no client library would send it."""
    with _connected(base_url) as sock:
        sock.sendall(_request(base_url, request_line, headers, body))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, content = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    if answer_headers.get("transfer-encoding") == "chunked":
        content = _unchunked(content)
    return RawAnswer(int(status_line.split()[1]), answer_headers, content)


def send_and_leave(base_url: str, request_line: str, *, headers: dict[str, str], body: bytes) -> None:
    """Send a request whose ``body`` is shorter than its framing says (a chunk begun, not finished),
    then close the connection without reading: a caller gone mid-body."""
    with _connected(base_url) as sock:
        sock.sendall(_request(base_url, request_line, headers, body))


def _connected(base_url: str) -> socket.socket:
    host, _, port = base_url.removeprefix("http://").partition(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _request(
    base_url: str, request_line: str, headers: dict[str, str] | list[tuple[str, str]] | None, body: bytes
) -> bytes:
    host = base_url.removeprefix("http://").partition(":")[0]
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    lines = [request_line, f"host: {host}", "connection: close", *(f"{k}: {v}" for k, v in pairs)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _unchunked(data: bytes) -> bytes:
    body = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        body, data = body + data[:size], data[size + 2 :]
