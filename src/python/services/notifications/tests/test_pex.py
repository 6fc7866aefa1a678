"""The packaged notifications.pex, run as its own process, fed events and called over HTTP, as it is deployed."""

import uuid

from flotilla_kit.testing.pex import http, packaged_pex
from flotilla_kit.testing.waiting import eventually_sync
from notifications.tests.conftest import ADMIN, confirmed, publish

pex = packaged_pex("notifications")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings", "dlq")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"PORT": "eighty", "DISCOVERY": "carrier-pigeon"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once_and_downgrades(pex, tmp_path):
    pex.check_migrations(tmp_path / "notifications.db", ["0001_create_notifications"])


async def test_the_pex_records_a_notification_on_its_embedded_defaults_and_stops_cleanly(
    pex, tmp_path, redis, redis_server
):
    # Only Redis: the embedded SQLite default lives in ./.data of the cwd.
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        order_id = uuid.uuid4()
        await publish(redis, confirmed(order_id, amount=700))
        url = f"{service.base_url}/notifications?order_id={order_id}"
        eventually_sync(
            lambda: http("GET", url, headers=ADMIN).body.get("items"), timeout=30, what="the notification recorded"
        )
        [told] = http("GET", url, headers=ADMIN).body["items"]
        assert told["kind"] == "order_confirmed" and "7.00 EUR" in told["message"]
        assert http("GET", url).status == 401
        assert (tmp_path / ".data" / "notifications.db").exists()
