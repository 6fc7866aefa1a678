"""The base of every typed service client (``catalog_client``, ``inventory_client``, ...).

A typed client turns a service's HTTP answers into its msgspec contract types and its problem
documents into exceptions, so that callers never see status codes or raw JSON:

    class CatalogClient(ServiceClient):
        service = "catalog"

        async def get_product(self, product_id: uuid.UUID) -> Product:
            return await self.get(f"/products/{product_id}", Product)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import msgspec

from flotilla_http.client import HttpClient
from flotilla_http.response import Response

T = TypeVar("T")

_problem_decoder = msgspec.json.Decoder(dict[str, Any])


class ServiceCallError(Exception):
    """A service answered with a problem (4xx or 5xx), or with a body that is not its contract.

    ``status`` is the answer's status (502 for a body that does not fit the contract), ``detail``
    the problem document's detail when it had one.
    """

    def __init__(self, service: str, status: int, detail: str) -> None:
        super().__init__(f"{service} answered {status}: {detail}")
        self.service = service
        self.status = status
        self.detail = detail


class NotFoundError(ServiceCallError):
    """The service answered 404: what was asked for does not exist."""


class ServiceClient:
    """Calls one service through a shared ``HttpClient`` (discovery, deadlines, retries, breakers).

    Raises ``NotFoundError`` for a 404, ``ServiceCallError`` for any other problem answer or an
    answer that does not decode into the contract type, and flotilla_http's ``UpstreamError``s
    when no answer came (no instance, circuit open, timeout).
    """

    service: ClassVar[str]

    def __init__(self, http: HttpClient, *, service: str | None = None, timeout: float | None = None) -> None:
        self.http = http
        self.service_name = service or self.service
        self.timeout = timeout

    async def get(self, path: str, type: type[T], *, headers: Mapping[str, str] | None = None) -> T:
        return await self.call("GET", path, type, headers=headers)

    async def call(
        self,
        method: str,
        path: str,
        type: type[T],
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (200, 201),
    ) -> T:
        """Send one request and decode its answer into ``type`` (statuses in ``expect`` only)."""
        response = await self.http.request(
            self.service_name,
            method,
            path,
            json=json,
            headers=headers,
            timeout=self.timeout,
        )
        if response.status not in expect:
            raise self._error(response)
        try:
            return response.json(type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ServiceCallError(self.service_name, 502, f"answer does not fit {type.__name__}: {exc}") from None

    def _error(self, response: Response) -> ServiceCallError:
        detail = f"status {response.status}"
        try:
            problem = _problem_decoder.decode(response.content)
            detail = str(problem.get("detail") or problem.get("title") or detail)
        except msgspec.DecodeError:
            pass
        error = NotFoundError if response.status == 404 else ServiceCallError
        return error(self.service_name, response.status, detail)
