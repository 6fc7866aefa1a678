"""The packaged payments.pex, run as its own process, fed events and called over HTTP, as it is deployed."""

import uuid

from flotilla_kit.testing.pex import http, packaged_pex
from flotilla_kit.testing.waiting import eventually_sync
from payments.tests.conftest import ADMIN, publish, requested

pex = packaged_pex("payments")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings", "dlq")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"PROVIDER_FAILURE_RATE": "2", "DECLINE_ABOVE": "-1"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once_and_downgrades(pex, tmp_path):
    pex.check_migrations(tmp_path / "payments.db", ["0001_create_payments"])


async def test_the_pex_captures_a_requested_payment_on_its_embedded_defaults_and_stops_cleanly(
    pex, tmp_path, redis, redis_server
):
    # Only Redis: the embedded SQLite default lives in ./.data of the cwd.
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        order_id = uuid.uuid4()
        await publish(redis, requested(order_id, amount=700))
        url = f"{service.base_url}/payments/{order_id}"
        eventually_sync(lambda: http("GET", url, headers=ADMIN).status == 200, timeout=30, what="the payment captured")
        payment = http("GET", url, headers=ADMIN).body
        assert payment["status"] == "captured" and payment["amount"] == {"amount": 700, "currency": "EUR"}
        assert http("GET", url).status == 401
        assert (tmp_path / ".data" / "payments.db").exists()
