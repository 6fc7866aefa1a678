"""The packaged inventory.pex, run as its own process and called over HTTP, as it is deployed."""

import uuid

from flotilla_kit.testing.pex import http, packaged_pex

pex = packaged_pex("inventory")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings", "dlq")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"PORT": "eighty", "MAX_PAGE_SIZE": "0"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once(pex, tmp_path):
    pex.check_migrations(tmp_path / "inventory.db", ["0001_create_stock_and_reservations"], downgrade=False)


def test_the_pex_serves_the_api_on_its_embedded_database_and_stops_cleanly(pex, tmp_path, redis_server):
    # No settings but Redis (for its events): the embedded SQLite default lives in ./.data of the cwd.
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        admin = {"x-caller-id": "ops", "x-caller-roles": "admin"}
        product = uuid.uuid4()
        level = http("PUT", f"{service.base_url}/stock/{product}", {"on_hand": 5, "reason": "count"}, admin)
        assert level.status == 200, level.body
        read = http("GET", f"{service.base_url}/stock/{product}")
        assert (read.status, read.body) == (200, level.body)
        unknown = http("GET", f"{service.base_url}/stock/{uuid.uuid4()}")
        assert unknown.status == 404 and unknown.body["status"] == 404
        assert (tmp_path / ".data" / "inventory.db").exists()
