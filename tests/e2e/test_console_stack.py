"""The console in a real browser against the whole shop as processes: log in with a one-time link, see
every service, watch a group's lag grow while its consumer is stopped and shrink when it is back,
follow an order from the sagas page to its trace across the services and their stream hops, hand a
dead consumer's entries to its group, and open a dead letter made by a real fault (the notifications
database locked through every delivery) and replay it: its effect happens once, and replaying it
again from a page opened before changes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from console.tests.browsing import WAIT_SECONDS, click, log_in, needs_chromium, wait_for_text, wait_until
from e2e.shop import final_order, new_product, place_order
from redis.asyncio import Redis
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from stack.runner import SERVICES, Platform, running_platform

from flotilla_contracts.events import ORDERS_EVENTS
from flotilla_kit.testing.ports import free_port
from flotilla_kit.testing.processes import ServiceProcess
from flotilla_kit.testing.waiting import eventually, eventually_sync
from flotilla_redis.factory import create_redis
from flotilla_streams.dlq import DeadLetter, DlqEntry, dead_letter, list_entries
from flotilla_streams.envelope import ENVELOPE_FIELD, decode

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
    # A live consumer waits 10 minutes before taking a silent one's entries itself: the hand-over
    # test decides when they move.
    env["notifications"]["STREAM_CLAIM_IDLE_SECONDS"] = "600"
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
                "CONSOLE_WRITE": "true",
                # Silent 2 s, a consumer may be presumed dead (the hand-over test's stranded one is).
                "CONSOLE_DEAD_CONSUMER_IDLE_SECONDS": "2",
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
    wait_until(browser, lambda d: _services_shown(d) >= {*SERVICES, "console"}, "every service on the services page")
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
        wait_until(browser, lambda d: (_group_lag(d, "orders.events", "notifications") or 0) >= 3, "the lag to grow")
        browser.save_screenshot(str(screenshots / "stack-streams-lagging.png"))
        platform.start("notifications")
        wait_until(browser, lambda d: _group_lag(d, "orders.events", "notifications") == 0, "the lag to drop", 60)

    # From the sagas page to the order's timeline, and on to its trace.
    browser.get(f"{console.base_url}/#/sagas?status=confirmed")
    wait_for_text(browser, order_id)
    browser.save_screenshot(str(screenshots / "stack-sagas.png"))
    click(browser, By.LINK_TEXT, order_id)
    wait_for_text(browser, "Timeline")
    timeline = browser.find_element(By.CSS_SELECTOR, ".timeline").text
    assert "placed" in timeline and "confirmed" in timeline
    click(browser, By.ID, "order-traces")
    wait_for_text(browser, "gateway: POST /api/orders")  # the trace starts at the gateway
    click(browser, By.CSS_SELECTOR, "#view table a")
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
    assert refused.status_code == 403 and "for operators" in refused.json()["detail"]  # the console's own door
    operator = {"authorization": f"Bearer {platform.token('operator', sub='ops-2')}"}
    refused = httpx.get(url, headers=operator, timeout=10)
    assert refused.status_code == 403 and "orders refused" in refused.json()["detail"]  # orders: admins only
    admin = {"authorization": f"Bearer {platform.token('admin', sub='ops-1')}"}
    counts = httpx.get(url, headers=admin, timeout=10)
    assert counts.status_code == 200 and set(counts.json()) == {"by_status", "stuck"}


def _strand_entries(platform: Platform, order_id: str) -> str:
    """What a notifications instance that died mid-work leaves: it read the group's backlog and never
    acked it, and the OrderConfirmed of ``order_id`` failed so often that it went to the dead letters
    (say, the mail server was down). Returns that dead letter's id."""

    def is_its_confirmation(fields: dict[bytes, bytes]) -> bool:
        envelope = decode(fields[ENVELOPE_FIELD])
        return (
            envelope.type == "orders.OrderConfirmed" and msgspec.json.decode(envelope.payload)["order_id"] == order_id
        )

    async def relayed(client: Redis) -> bool:
        return any(is_its_confirmation(fields) for _id, fields in await client.xrange(ORDERS_EVENTS))

    async def strand() -> str:
        client = create_redis(platform.redis_server.url)
        try:
            # The order is confirmed once its transaction commits; its OrderConfirmed reaches the
            # stream when the outbox relay has sent it, a moment later.
            await eventually(lambda: relayed(client), timeout=30, what="the OrderConfirmed relayed to the stream")
            read = await client.xreadgroup("notifications", "notifications-gone", {ORDERS_EVENTS: ">"}, count=1000)
            entries = read[0][1] if read else []
            confirmed = [(entry_id, fields) for entry_id, fields in entries if is_its_confirmation(fields)]
            assert len(confirmed) == 1, entries
            entry_id, fields = confirmed[0]
            failed = DeadLetter(entry_id, fields, "SMTPServerDisconnected: the mail server went away", 5)
            await dead_letter(client, ORDERS_EVENTS, "notifications", "notifications-gone", [failed])
            return (await list_entries(client, ORDERS_EVENTS))[-1].id
        finally:
            await client.aclose()

    return asyncio.run(strand())


def _answer_prompt(driver, text: str | None = None) -> None:
    alert = WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.alert_is_present())
    if text is not None:
        alert.send_keys(text)
    alert.accept()


def test_an_admin_hands_over_a_dead_consumers_entries_and_replays_a_dead_letter_whose_effect_happens_once(
    stack, browser, screenshots
):
    platform, console = stack
    browser.delete_all_cookies()
    log_in(browser, console.base_url, SECRET)
    with platform.client("admin", sub="admin-1") as admin, platform.client("customer", sub="c-3") as customer:
        product = new_product(admin, stock=100)
        platform.stop("notifications")
        try:
            placed = place_order(customer, [(product, 1)])
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            assert final_order(customer, order_id)["status"] == "confirmed"
            letter = _strand_entries(platform, order_id)
            stranded = platform.stats(ORDERS_EVENTS, "notifications")
            assert stranded is not None and stranded.pending > 0
        finally:
            platform.start("notifications")  # also when this part failed: the next tests need it
        # One more order makes the new instance a member of the group (Redis 6 adds members on delivery).
        second = place_order(customer, [(product, 1)]).json()["id"]
        assert final_order(customer, second)["status"] == "confirmed"

        def notified(order: str) -> int:
            answer = admin.get("/api/notifications", params={"order_id": order})
            assert answer.status_code == 200, answer.text
            return len(answer.json()["items"])

        eventually_sync(lambda: notified(second) == 1, what="the second order's notification")

        browser.get(f"{console.base_url}/#/streams")
        wait_until(browser, lambda d: d.find_element(By.CSS_SELECTOR, "button[data-claim='notifications-gone']"), "")
        browser.save_screenshot(str(screenshots / "stack-streams-dead-consumer.png"))
        click(browser, By.CSS_SELECTOR, "button[data-claim='notifications-gone']")
        _answer_prompt(browser, "notifications-gone")  # typed again: the confirmation
        wait_until(browser, lambda d: "to notifications." in d.find_element(By.ID, "status").text, "the hand-over")
        eventually_sync(
            lambda: (stats := platform.stats(ORDERS_EVENTS, "notifications")) is not None and stats.pending == 0,
            timeout=60,
            what="the handed-over entries handled by the live notifications instance",
        )
        assert notified(order_id) == 0  # its OrderConfirmed is a dead letter, not handled

        browser.get(f"{console.base_url}/#/dlq/{ORDERS_EVENTS}/{letter}")
        wait_for_text(browser, "SMTPServerDisconnected")
        browser.save_screenshot(str(screenshots / "stack-dead-letter.png"))
        click(browser, By.ID, "replay")
        _answer_prompt(browser)
        wait_for_text(browser, "Replayed.")
        eventually_sync(lambda: notified(order_id) == 1, timeout=60, what="the replayed event's notification")
        eventually_sync(
            lambda: (stats := platform.stats(ORDERS_EVENTS, "notifications")) is not None and stats.pending == 0,
            what="the replayed event acked",
        )
        assert notified(order_id) == 1 and notified(second) == 1  # once each

    browser.get(f"{console.base_url}/#/audit")
    wait_for_text(browser, "replay dead letter")
    audit = browser.find_element(By.ID, "view").text
    assert "claim pending entries" in audit and "console-login" in audit
    browser.save_screenshot(str(screenshots / "stack-audit.png"))


@contextlib.contextmanager
def _write_locked(database: Path) -> Iterator[None]:
    """Hold the SQLite file's write lock, as a long migration or a stuck process would: the service's
    writers wait their busy timeout and fail with "database is locked"; its reads go on (WAL)."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.close()  # rolls back: the lock is gone


def _dead_letter_of(platform: Platform, order_id: str) -> DlqEntry | None:
    """The dead letter of ``order_id``'s OrderConfirmed on orders.events, if there is one."""

    async def find() -> DlqEntry | None:
        client = create_redis(platform.redis_server.url)
        try:
            for entry in await list_entries(client, ORDERS_EVENTS, count=1000):
                envelope = decode(entry.fields[ENVELOPE_FIELD])
                if (
                    envelope.type == "orders.OrderConfirmed"
                    and msgspec.json.decode(envelope.payload)["order_id"] == order_id
                ):
                    return entry
            return None
        finally:
            await client.aclose()

    return asyncio.run(find())


def test_a_dead_letter_of_a_real_fault_replayed_from_its_page_takes_effect_once_and_a_second_replay_is_refused(
    stack, browser, screenshots
):
    platform, console = stack
    browser.delete_all_cookies()
    log_in(browser, console.base_url, SECRET)
    with platform.client("admin", sub="admin-1") as admin, platform.client("customer", sub="c-4") as customer:

        def notified(order: str) -> int:
            answer = admin.get("/api/notifications", params={"order_id": order})
            assert answer.status_code == 200, answer.text
            return len(answer.json()["items"])

        product = new_product(admin, stock=100)
        with _write_locked(platform.directory / "notifications.db"):
            placed = place_order(customer, [(product, 1)])
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            assert final_order(customer, order_id)["status"] == "confirmed"
            # Every delivery waits out the busy timeout and fails; after the last one, the group's
            # consumer moves the event to the dead letters (five deliveries: about half a minute).
            eventually_sync(
                lambda: _dead_letter_of(platform, order_id) is not None,
                timeout=120,
                interval=0.5,
                what="the OrderConfirmed dead-lettered by the notifications consumer",
            )
        letter = _dead_letter_of(platform, order_id)
        assert letter is not None
        assert (letter.group, letter.consumer, letter.deliveries) == ("notifications", "notifications", 5)
        assert "database is locked" in letter.reason, letter.reason
        assert notified(order_id) == 0  # nothing of it happened: every attempt was rolled back

        page = f"{console.base_url}/#/dlq/{ORDERS_EVENTS}/{letter.id}"
        browser.get(page)
        wait_for_text(browser, "database is locked")
        fields = {
            row.find_element(By.XPATH, "td[1]").text: row.find_element(By.XPATH, "td[2]").text
            for row in browser.find_elements(By.CSS_SELECTOR, "#view table tbody tr")
        }
        assert fields["Deliveries"] == "5"
        assert fields["Group / consumer"] == "notifications / notifications"
        assert fields["Event"].startswith("orders.OrderConfirmed ")
        assert "gave up after 5 deliveries" in fields["Reason"]
        assert order_id in browser.find_element(By.CSS_SELECTOR, "#view pre").text  # the payload
        browser.save_screenshot(str(screenshots / "stack-dead-letter-real-fault.png"))

        # The same page in a second tab, opened before the replay: a second operator, or a double take.
        first_tab = browser.current_window_handle
        browser.switch_to.new_window("tab")
        second_tab = browser.current_window_handle
        try:
            browser.get(page)
            wait_for_text(browser, "database is locked")

            browser.switch_to.window(first_tab)
            click(browser, By.ID, "replay")
            _answer_prompt(browser)  # the confirmation
            wait_for_text(browser, "Replayed.")
            eventually_sync(lambda: notified(order_id) == 1, timeout=60, what="the replayed event's notification")
            eventually_sync(
                lambda: (stats := platform.stats(ORDERS_EVENTS, "notifications")) is not None
                and (stats.pending, stats.lag) == (0, 0),
                what="the replayed event handled and acked",
            )
            assert _dead_letter_of(platform, order_id) is None

            browser.switch_to.window(second_tab)
            click(browser, By.ID, "replay")  # the stale page still offers it
            _answer_prompt(browser)
            wait_for_text(browser, f"Not replayed: no dead letter {letter.id} on {ORDERS_EVENTS} (already replayed?)")
            browser.execute_script("document.getElementById('replay-result').scrollIntoView()")
            browser.save_screenshot(str(screenshots / "stack-dead-letter-replayed-twice.png"))
        finally:
            browser.switch_to.window(second_tab)
            browser.close()
            browser.switch_to.window(first_tab)
        # Nothing went back on the stream: the group has nothing to handle, and the effect stays single.
        stats = platform.stats(ORDERS_EVENTS, "notifications")
        assert stats is not None and (stats.pending, stats.lag) == (0, 0)
        assert notified(order_id) == 1

    # Both attempts audited: the replay, and the second one refused.
    browser.get(f"{console.base_url}/#/audit")
    target = f"{ORDERS_EVENTS} {letter.id}"
    wait_for_text(browser, target)
    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#view table tbody tr")
    ]
    outcomes = sorted(row[4].split(":")[0] for row in rows if row[2:4] == ["replay dead letter", target])
    assert outcomes == ["refused", "replayed"], rows
