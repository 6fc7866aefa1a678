"""The packaged orders.pex, run as its own process and called over HTTP, as it is deployed."""

import uuid

from flotilla_kit.testing.pex import http, packaged_pex
from flotilla_kit.testing.ports import free_port

pex = packaged_pex("orders")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"PORT": "eighty", "SAGA_STEP_TIMEOUT_SECONDS": "0"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once_and_downgrades(pex, tmp_path):
    pex.check_migrations(tmp_path / "orders.db", ["0001_create_orders", "0002_index_orders_by_state"])


def test_the_pex_serves_the_api_on_its_embedded_defaults_and_stops_cleanly(pex, tmp_path, redis_server):
    # No settings but Redis (the saga's events): the embedded SQLite default lives in ./.data of the
    # cwd. No catalog is known, so an order cannot be priced: 503, retry later.
    alice = {"x-caller-id": "alice"}
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        listed = http("GET", f"{service.base_url}/orders", headers=alice)
        assert (listed.status, listed.body) == (200, {"items": [], "next_cursor": None})
        body = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}
        refused = http("POST", f"{service.base_url}/orders", body, {**alice, "Idempotency-Key": "k-1"})
        assert refused.status == 503 and refused.body["status"] == 503 and "catalog" in refused.body["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        assert (tmp_path / ".data" / "orders.db").exists()


def test_serving_without_redis_fails_at_start_up_naming_the_setting(pex, tmp_path):
    result = pex.run("serve", "--port", str(free_port()), env={"REDIS_URL": ""}, cwd=tmp_path)
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr
