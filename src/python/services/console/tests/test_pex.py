"""The packaged console.pex, run as its own process and called over HTTP, as it is deployed."""

import urllib.request

from flotilla_kit.testing.pex import http, packaged_pex

pex = packaged_pex("console")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"CONSOLE_MAX_SPANS": "0", "CONSOLE_WRITE": "perhaps"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once(pex, tmp_path):
    pex.check_migrations(tmp_path / "console.db", ["0001_create_trace_store_and_audit"])


def test_the_pex_serves_its_pages_and_takes_traces_on_its_embedded_defaults(pex, tmp_path, redis_server):
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        page = http("GET", f"{service.base_url}/api/config")
        assert page.status == 200 and page.body["write"] is False
        # The page and its assets are inside the PEX and served by it.
        for asset, media_type in (
            ("/", "text/html"),
            ("/static/console.js", "javascript"),
            ("/static/console.css", "css"),
        ):
            with urllib.request.urlopen(service.base_url + asset, timeout=10) as response:
                assert response.status == 200 and media_type in response.headers["content-type"], asset
        export = {"resourceSpans": []}  # an empty OTLP JSON export
        assert http("POST", f"{service.base_url}/v1/traces", export).status == 200
        assert (tmp_path / ".data" / "console.db").exists()
