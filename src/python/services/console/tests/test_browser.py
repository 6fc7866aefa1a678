"""The console's pages in a real browser (Debian's Chromium through chromedriver), against a real console
process and a real Redis: services, streams and a dead letter replayed once, a trace's waterfall, and a
read-only console that offers no write button. A screenshot of each page is kept as an artefact, in
CONSOLE_SCREENSHOTS when set (CI keeps that folder), else in the test's temporary folder."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest
from console.tests.browsing import WAIT_SECONDS, click, log_in, needs_chromium, wait_for_text
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.redis import start_redis
from flotilla_redis.factory import create_redis
from flotilla_streams.dlq import DeadLetter, dead_letter, list_entries

STREAM = "payments.events"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
SECRET = "browser-test-secret-" + "x" * 20
pytestmark = needs_chromium


@pytest.fixture(scope="module")
def redis_server():
    server = start_redis()
    yield server
    server.close()


def start_console(redis_url: str, directory: Path, *, write: bool) -> ServiceProcess:
    port = free_port()
    env = {
        "PYTHONPATH": os.pathsep.join(sys.path),
        "LOG_LEVEL": "WARNING",
        "DISCOVERY": "redis",
        "REDIS_URL": redis_url,
        "INSTANCE_ID": f"console-{'write' if write else 'read'}",
        "DATABASE_URL": f"sqlite:///{directory}/console-{write}.db",
        "CONSOLE_WRITE": str(write).lower(),
        "CONSOLE_SECRET": SECRET,
    }
    process = ServiceProcess([sys.executable, "-m", "console", "serve", "--port", str(port)], port=port, env=env)
    process.wait_ready(timeout=90)
    return process


@pytest.fixture(scope="module")
def dead_letter_id(redis_server) -> str:
    """One dead letter on the stream, with a group that has some lag."""

    async def make() -> str:
        client = create_redis(redis_server.url)
        try:
            envelope = {
                "id": "evt-1",
                "type": "payments.PaymentCaptured",
                "correlation_id": "order-77",
                "payload": {"order_id": "order-77", "amount": 450},
            }
            entry_id = await client.xadd(STREAM, {b"envelope": json.dumps(envelope).encode()})
            await client.xadd(STREAM, {b"envelope": b"{}"})
            await client.xgroup_create(STREAM, "orders", id="0")
            await client.xreadgroup("orders", "orders-1", {STREAM: ">"}, count=1)
            letter = DeadLetter(entry_id, {b"envelope": json.dumps(envelope).encode()}, "ValueError: no such order", 5)
            await dead_letter(client, STREAM, "orders", "orders-1", [letter])
            return (await list_entries(client, STREAM))[0].id
        finally:
            await client.aclose()

    return asyncio.run(make())


def send_trace(console: ServiceProcess) -> None:
    """A request to orders that publishes an event which payments consumes: one trace, one stream hop."""
    t0 = 1_700_000_000_000_000_000

    def span(span_id, parent, name, kind, start_ms, ms, **extra):
        return {
            "traceId": TRACE_ID, "spanId": span_id, "parentSpanId": parent, "name": name, "kind": kind,
            "startTimeUnixNano": str(t0 + int(start_ms * 1e6)), "endTimeUnixNano": str(t0 + int((start_ms + ms) * 1e6)),
            **extra,
        }  # fmt: skip

    def resource(service, *spans):
        return {
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
            "scopeSpans": [{"spans": list(spans)}],
        }

    correlation = [{"key": "messaging.message.conversation_id", "value": {"stringValue": "order-77"}}]
    export = {
        "resourceSpans": [
            resource(
                "orders",
                span("a1a1a1a1a1a1a1a1", "", "POST /orders", 2, 0, 40),
                span("b2b2b2b2b2b2b2b2", "a1a1a1a1a1a1a1a1", "INSERT orders", 3, 5, 10),
                span("c3c3c3c3c3c3c3c3", "a1a1a1a1a1a1a1a1", "publish orders.events", 4, 20, 3),
            ),
            resource(
                "payments",
                span(
                    "d4d4d4d4d4d4d4d4", "c3c3c3c3c3c3c3c3", "process orders.events", 5, 30, 60,
                    attributes=correlation, links=[{"traceId": TRACE_ID, "spanId": "c3c3c3c3c3c3c3c3"}],
                    status={"code": 2, "message": "card declined"},
                ),
            ),
        ]
    }  # fmt: skip
    request = urllib.request.Request(
        f"{console.base_url}/v1/traces", data=json.dumps(export).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def test_an_operator_sees_services_and_streams_replays_a_dead_letter_and_follows_a_trace(
    browser, redis_server, dead_letter_id, screenshots, tmp_path
):
    console = start_console(redis_server.url, tmp_path, write=True)
    try:
        send_trace(console)
        browser.get(f"{console.base_url}/#/services")
        wait_for_text(browser, "Log in")  # no session yet: the page asks for one
        browser.save_screenshot(str(screenshots / "login.png"))
        log_in(browser, console.base_url, SECRET)
        browser.get(f"{console.base_url}/#/services")
        wait_for_text(browser, "console-write")
        WebDriverWait(browser, WAIT_SECONDS).until(
            expected_conditions.text_to_be_present_in_element((By.ID, "mode"), "write mode")
        )
        assert "ready" in browser.find_element(By.ID, "view").text
        browser.save_screenshot(str(screenshots / "services.png"))

        browser.get(f"{console.base_url}/#/streams")
        wait_for_text(browser, f"{STREAM} · 2 entries")
        view = browser.find_element(By.ID, "view").text
        assert "1 dead letter" in view and "orders-1" in view
        browser.save_screenshot(str(screenshots / "streams.png"))

        click(browser, By.LINK_TEXT, "1 dead letter")
        wait_for_text(browser, "ValueError: no such order")
        click(browser, By.LINK_TEXT, dead_letter_id)
        wait_for_text(browser, '"amount": 450')
        browser.save_screenshot(str(screenshots / "dead-letter.png"))
        browser.find_element(By.ID, "replay").click()
        WebDriverWait(browser, WAIT_SECONDS).until(expected_conditions.alert_is_present()).accept()
        wait_for_text(browser, "Replayed.")

        async def stream_state() -> tuple[int, int]:
            client = create_redis(redis_server.url)
            try:
                return len(await list_entries(client, STREAM)), await client.xlen(STREAM)
            finally:
                await client.aclose()

        assert asyncio.run(stream_state()) == (0, 3)  # out of the DLQ, back on the stream once

        browser.get(f"{console.base_url}/#/traces?value=order-77")
        wait_for_text(browser, "orders: POST /orders")
        browser.save_screenshot(str(screenshots / "traces.png"))
        browser.find_element(By.LINK_TEXT, TRACE_ID[:16]).click()
        wait_for_text(browser, "payments: process orders.events")
        rows = browser.find_elements(By.CSS_SELECTOR, ".span-row")
        assert [row.get_attribute("data-span")[:2] for row in rows] == ["a1", "b2", "c3", "d4"]
        rows[3].click()
        wait_for_text(browser, "card declined")
        assert "same trace, span c3c3c3c3c3c3c3c3" in browser.find_element(By.ID, "view").text
        browser.save_screenshot(str(screenshots / "trace.png"))
    finally:
        console.stop()


def test_a_read_only_console_shows_no_write_button(browser, redis_server, screenshots, tmp_path):
    async def one_more_dead_letter() -> str:
        client = create_redis(redis_server.url)
        try:
            entry_id = await client.xadd(STREAM, {b"envelope": b"{}"})
            await dead_letter(client, STREAM, "orders", "orders-1", [DeadLetter(entry_id, {}, "undecodable", 1)])
            return (await list_entries(client, STREAM))[-1].id
        finally:
            await client.aclose()

    letter = asyncio.run(one_more_dead_letter())
    console = start_console(redis_server.url, tmp_path, write=False)
    try:
        browser.delete_all_cookies()
        log_in(browser, console.base_url, SECRET)
        browser.get(f"{console.base_url}/#/dlq/{STREAM}")
        wait_for_text(browser, "undecodable")
        assert browser.find_elements(By.ID, "replay-all") == []
        browser.get(f"{console.base_url}/#/dlq/{STREAM}/{letter}")
        wait_for_text(browser, "undecodable")
        assert browser.find_element(By.ID, "mode").text == "read-only"
        assert browser.find_elements(By.ID, "replay") == []
        browser.save_screenshot(str(screenshots / "dead-letter-read-only.png"))
        # The page offers no button, and the API refuses the POST the button would send (with the session's CSRF token).
        status = browser.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const config = await (await fetch("api/config")).json();
            const answer = await fetch(arguments[0], {
              method: "POST",
              headers: {"content-type": "application/json", "x-csrf-token": config.session.csrf},
              body: JSON.stringify({confirm: arguments[1]}),
            });
            done([answer.status, (await answer.json()).detail]);
            """,
            f"api/streams/{STREAM}/dead-letters/{letter}/replay",
            letter,
        )
        assert status[0] == 403 and "read-only" in status[1]
    finally:
        console.stop()
