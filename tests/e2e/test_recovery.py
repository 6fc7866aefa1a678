"""Recovery after an outage: a catalog that comes back after all of them died is used at once.

Both catalogs are killed while callers keep calling: a burst of concurrent reads fails on both dead
instances (so both are ejected) and opens the gateway's circuit for the catalog. Then one catalog
starts again, either under the id of one that died (a restart) or under a new id (a replacement).
Its registration must reach the gateway, clear the ejection of its id and let the open circuit
send a probe without waiting out its window. This gateway holds its circuits open and its
ejections for a minute, longer than the test waits: reads succeeding prove the registration ended
them, not a timer, however slow the machine.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator

import httpx
import pytest
from e2e.conftest import Shop, running_shop

from flotilla_kit.testing.waiting import eventually

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PATH = "/api/catalog/products?limit=1"
WINDOW_SECONDS = 60  # the circuit's open time and the ejection time
# Generous for a loaded machine, and still far inside the windows.
RECOVERY_TIMEOUT_SECONDS = 20.0


@pytest.fixture(scope="module")
def recovering_shop(tmp_path_factory) -> Iterator[Shop]:
    """Two catalogs behind a gateway whose circuit-open and ejection windows outlast the test."""
    windows = {"BREAKER_OPEN_SECONDS": str(WINDOW_SECONDS), "EJECTION_SECONDS": str(WINDOW_SECONDS)}
    with running_shop(tmp_path_factory.mktemp("recovering-shop"), **windows) as shop:
        yield shop


def _poll(condition, *, timeout: float, interval: float, what: str) -> None:
    async def check() -> bool:
        return condition()

    asyncio.run(eventually(check, timeout=timeout, interval=interval, what=what))


def _start_both_catalogs(shop: Shop, http: httpx.Client) -> None:
    for name in ("catalog-a", "catalog-b"):
        process = shop.catalogs.get(name)
        if process is None or process.process.poll() is not None:
            shop.start_catalog(name)
    _poll(lambda: http.get(PATH).status_code == 200, timeout=30, interval=0.1, what="reads through the gateway")


def _next_probe_in(http: httpx.Client) -> float | None:
    """Seconds until the open circuit's next probe, as the gateway's 503 says; None while not open."""
    response = http.get(PATH)
    if response.status_code != 503:
        return None
    found = re.search(r"circuit open, next probe in ([0-9.]+)s", response.json().get("detail", ""))
    return float(found.group(1)) if found else None


def _concurrent_reads(base_url: str, count: int) -> list[int]:
    async def reads() -> list[int]:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            responses = await asyncio.gather(*(http.get(PATH) for _ in range(count)))
        return [response.status_code for response in responses]

    return asyncio.run(reads())


@pytest.mark.parametrize("returning", ["catalog-b", "catalog-c"], ids=["same-instance-id", "new-instance-id"])
def test_a_catalog_returning_after_all_died_is_used_without_waiting_out_any_window(recovering_shop, returning):
    shop = recovering_shop
    with httpx.Client(base_url=shop.url, timeout=10) as http:
        _start_both_catalogs(shop, http)

        for process in shop.catalogs.values():
            process.stop(signal.SIGKILL)
        # Traffic goes on through the outage: it ejects the dead instances and opens the circuit.
        assert 200 not in _concurrent_reads(shop.url, 12)
        _poll(lambda: _next_probe_in(http) is not None, timeout=30, interval=0.05, what="the circuit opening")
        # Opened with this gateway's window: only a registration can let a read through in time.
        assert (_next_probe_in(http) or 0) > RECOVERY_TIMEOUT_SECONDS

        shop.start_catalog(returning)

        _poll(
            lambda: http.get(PATH).status_code == 200,
            timeout=RECOVERY_TIMEOUT_SECONDS,
            interval=0.05,
            what=f"a read through the gateway after {returning} was ready",
        )
