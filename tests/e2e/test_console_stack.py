"""The console in a real browser against the whole shop as processes: log in with a one-time link, see
every service, watch a group's lag grow while its consumer is stopped and shrink when it is back, and
follow an order from the sagas page to its trace across the services and their stream hops."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from console.tests.browsing import WAIT_SECONDS, log_in, needs_chromium, wait_for_text
from e2e.shop import final_order, new_product, place_order
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from stack.runner import SERVICES, Platform, running_platform

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess

pytestmark = needs_chromium
SECRET = "stack-browser-test-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Platform, ServiceProcess]]:
    """The shop, every service sending its traces to a console (started once Redis is up, on a port
    chosen before the services start)."""
    directory = tmp_path_factory.mktemp("console-stack")
    console_port = free_port()
    tracing = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{console_port}", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    env = {name: dict(tracing) for name in (*SERVICES, "gateway")}
    with running_platform(directory, env=env) as platform:
        console = ServiceProcess(
            [sys.executable, "-m", "console", "serve", "--port", str(console_port)],
            port=console_port,
            env={
                "PYTHONPATH": os.pathsep.join(sys.path),
                "LOG_LEVEL": "WARNING",
                "DISCOVERY": "redis",
                "DISCOVERY_TTL_SECONDS": "5",
                "REDIS_URL": platform.redis_server.url,
                "INSTANCE_ID": "console-1",
                "DATABASE_URL": f"sqlite:///{directory}/console.db",
                "CONSOLE_SECRET": SECRET,
                "JWT_PUBLIC_KEY_FILE": str(directory / "public.pem"),  # the gateway's: the same tokens
            },
        )
        try:
            console.wait_ready(timeout=90)
            yield platform, console
        finally:
            console.stop()


def _services_shown(driver) -> set[str]:
    return {cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#view tbody tr td:first-child")}


def _group_lag(driver, stream: str, group: str) -> int | None:
    cells = driver.find_elements(
        By.XPATH,
        f"//h3[starts-with(normalize-space(), '{stream} ')]/following-sibling::table[1]//tr[td[1]='{group}']/td[2]",
    )
    return int(cells[0].text) if cells else None


def test_an_operator_follows_the_shop_from_services_to_lag_to_an_orders_trace(stack, browser, screenshots):
    platform, console = stack
    browser.delete_all_cookies()
    log_in(browser, console.base_url, SECRET)
    browser.get(f"{console.base_url}/#/services")
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda d: _services_shown(d) >= {*SERVICES, "console"}, "every service's instance on the services page"
    )
    browser.save_screenshot(str(screenshots / "stack-services.png"))

    with platform.client("admin", sub="admin-1") as admin, platform.client("customer", sub="c-1") as customer:
        product = new_product(admin, stock=100)
        placed = place_order(customer, [(product, 1)])
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        assert final_order(customer, order_id)["status"] == "confirmed"

        # Notifications stopped: its group's lag grows with every order; started again, it shrinks to 0.
        platform.stop("notifications")
        for _ in range(3):
            assert place_order(customer, [(product, 1)]).status_code == 201
        browser.get(f"{console.base_url}/#/streams")
        WebDriverWait(browser, WAIT_SECONDS).until(
            lambda d: (_group_lag(d, "orders.events", "notifications") or 0) >= 3, "the lag to grow to 3"
        )
        browser.save_screenshot(str(screenshots / "stack-streams-lagging.png"))
        platform.start("notifications")
        WebDriverWait(browser, 60).until(
            lambda d: _group_lag(d, "orders.events", "notifications") == 0, "the lag to shrink to 0"
        )

    # From the sagas page to the order's timeline, and on to its trace.
    browser.get(f"{console.base_url}/#/sagas?status=confirmed")
    wait_for_text(browser, order_id)
    browser.save_screenshot(str(screenshots / "stack-sagas.png"))
    browser.find_element(By.LINK_TEXT, order_id).click()
    wait_for_text(browser, "Timeline")
    timeline = browser.find_element(By.CSS_SELECTOR, ".timeline").text
    assert "placed" in timeline and "confirmed" in timeline
    browser.find_element(By.ID, "order-traces").click()
    wait_for_text(browser, "gateway: POST /api/orders")  # the trace starts at the gateway
    browser.find_element(By.CSS_SELECTOR, "#view table a").click()
    # The order's trace crosses the stream hops: the saga's consumers handled its events in it.
    wait_for_text(browser, "process orders.events")
    view = browser.find_element(By.ID, "view").text
    assert "orders: POST /orders" in view and "inventory" in view and "payments" in view
    browser.save_screenshot(str(screenshots / "stack-trace.png"))


def test_the_sagas_are_an_admins_view_as_orders_decides(stack):
    platform, console = stack
    url = f"{console.base_url}/api/sagas/counts"
    assert httpx.get(url, timeout=10).status_code == 401
    customer = {"authorization": f"Bearer {platform.token('customer', sub='c-2')}"}
    refused = httpx.get(url, headers=customer, timeout=10)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    admin = {"authorization": f"Bearer {platform.token('admin', sub='ops-1')}"}
    counts = httpx.get(url, headers=admin, timeout=10)
    assert counts.status_code == 200 and set(counts.json()) == {"by_status", "stuck"}
