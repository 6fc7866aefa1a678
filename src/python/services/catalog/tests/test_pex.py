"""The packaged catalog.pex, run as its own process and called over HTTP, as it is deployed."""

import re

from flotilla_kit.testing.pex import http, packaged_pex
from flotilla_kit.testing.ports import free_port

pex = packaged_pex("catalog")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"PORT": "eighty", "MAX_PAGE_SIZE": "0"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once(pex, tmp_path):
    pex.check_migrations(
        tmp_path / "catalog.db",
        [
            "0001_create_products",
            "0002_add_messaging_tables",
            "0003_search_and_listing_indexes",
            "0004_search_in_sku_order",
            "0005_search_words_in_sku_order",
        ],
        downgrade=False,
    )


def test_migrate_downgrades_from_the_pex_and_refuses_an_unknown_revision(pex, tmp_path):
    database = tmp_path / "catalog.db"
    assert pex.migrate(database=database).returncode == 0
    down = pex.migrate("--downgrade", "-1", database=database)
    assert down.returncode == 0, down.stderr
    assert "reverted  0005_search_words_in_sku_order" in down.stdout
    assert "pending  0005_search_words_in_sku_order" in pex.migrate("--status", database=database).stdout
    unknown = pex.migrate("--downgrade", "0042", database=database)
    assert unknown.returncode == 2
    assert "catalog: catalog.migrations: Can't locate revision identified by '0042'" in unknown.stderr


def test_the_pex_serves_the_api_on_its_embedded_defaults_and_stops_cleanly(pex, tmp_path, redis_server):
    # No settings but Redis (its events go there): the embedded SQLite default lives in ./.data of the cwd.
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        admin = {"x-caller-id": "ops", "x-caller-roles": "admin"}
        tea = {"sku": "tea-1", "name": "Tea", "price": {"amount": 450, "currency": "EUR"}}
        created = http("POST", f"{service.base_url}/products", tea, admin)
        assert created.status == 201, created.body
        read = http("GET", f"{service.base_url}/products/{created.body['id']}")
        assert (read.status, read.body) == (200, created.body)
        unknown = http("GET", f"{service.base_url}/products/by-sku/none")
        assert unknown.status == 404 and unknown.body["status"] == 404
        assert (tmp_path / ".data" / "catalog.db").exists()


def test_serving_without_redis_fails_at_start_up_naming_the_setting(pex, tmp_path):
    result = pex.run("serve", "--port", str(free_port()), env={"REDIS_URL": ""}, cwd=tmp_path)
    assert result.returncode != 0
    assert "REDIS_URL" in result.stderr


def test_version_names_the_commit_stamped_at_package_time_and_the_libs_inside(pex, tmp_path):
    result = pex.run("--version", env={"GIT_REVISION": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first, *libs = result.stdout.splitlines()
    assert re.fullmatch(r"catalog \d+\.\d+\.\d+ \(git [0-9a-f]{7,40}(-dirty)?\)", first), first
    inside = dict(line.split() for line in libs)
    assert {"flotilla_kit", "flotilla_contracts", "flotilla_streams"} <= inside.keys(), inside
    assert "orders_client" not in inside  # only what the PEX contains
