"""The packaged console.pex, run as its own process and called over HTTP, as it is deployed."""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

from flotilla_kit.testing.pex import http, packaged_pex

pex = packaged_pex("console")


def test_help_lists_the_commands(pex):
    pex.check_help_lists("serve", "migrate", "settings")


def test_a_bad_setting_stops_start_up_naming_the_variable(pex, tmp_path):
    pex.check_bad_settings_are_named({"CONSOLE_MAX_SPANS": "0", "CONSOLE_WRITE": "perhaps"}, cwd=tmp_path)


def test_migrate_applies_the_schema_once(pex, tmp_path):
    pex.check_migrations(
        tmp_path / "console.db",
        ["0001_create_trace_store_and_audit", "0002_create_login_links", "0003_create_revoked_sessions"],
    )


def test_the_pex_serves_its_pages_and_takes_traces_on_its_embedded_defaults(pex, tmp_path, redis_server):
    with pex.serving(cwd=tmp_path, env={"REDIS_URL": redis_server.url}) as service:
        # Auth is on by default: without a secret the console logs a one-time login link.
        assert http("GET", f"{service.base_url}/api/config").status == 401
        [link] = re.findall(r"one-time link: (http://\S+?)\"", service.output())
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with browser.open(link, timeout=10) as page:  # the link's page: a button that posts the token
            assert page.status == 200 and 'id="login-link"' in page.read().decode()
        form = urllib.parse.urlencode({"token": link.split("token=", 1)[1]}).encode()
        with browser.open(f"{service.base_url}/login/link", data=form, timeout=10) as landed:
            assert landed.status == 200 and landed.url == service.base_url + "/"  # the session cookie, the page
        with browser.open(f"{service.base_url}/api/config", timeout=10) as config:
            session = json.loads(config.read())
        assert session["write"] is False and session["session"]["caller"] == "console-login"
        try:
            browser.open(f"{service.base_url}/login/link", data=form, timeout=10)
            raise AssertionError("a login link worked twice")
        except urllib.error.HTTPError as refused:
            assert refused.code == 401 and "used already" in json.loads(refused.read())["detail"]
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
