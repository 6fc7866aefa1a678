"""Who may use the console: bearer JWTs, one-time login links, sessions with CSRF protection."""

import jwt
import pytest
from console.app import create_app, login_url
from console.sessions import SESSION_COOKIE, InvalidToken, Sessions
from console.tests.conftest import ADMIN, CUSTOMER, ISSUER, OPERATOR, SECRET, console_settings
from litestar.testing import TestClient

from flotilla_kit.settings import SettingsError


@pytest.fixture
def console(tmp_path, redis_server):
    settings = console_settings(tmp_path, redis_server, console_write=True)
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _link_path(console) -> str:
    client, settings = console
    url = login_url(settings, client.app.state.sessions)
    return url[url.index("/login") :]


def _redeem(client, path: str):
    """What the link's page does when its button is pressed."""
    return client.post("/login/link", data={"token": path.split("token=", 1)[1]}, follow_redirects=False)


def test_every_api_needs_an_operator_and_caller_headers_are_not_one(console):
    client, _ = console
    for path in ("/api/config", "/api/services", "/api/streams", "/api/traces", "/api/audit", "/api/sagas"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert "log in" in refused.json()["detail"] and refused.headers["www-authenticate"].startswith("Bearer")
        # The gateway's identity headers mean something only behind the gateway: here they are ignored.
        assert client.get(path, headers={"x-caller-id": "ops", "x-caller-roles": "admin"}).status_code == 401
    session = client.get("/api/config", headers=OPERATOR).json()["session"]
    assert (session["caller"], session["roles"], session["csrf"]) == ("operator-1", ["operator"], None)


def test_a_shop_customers_token_opens_nothing_though_the_same_key_signed_it(console):
    client, _ = console
    for path in ("/api/config", "/api/streams", "/api/traces", "/api/audit"):
        refused = client.get(path, headers=CUSTOMER)
        assert refused.status_code == 403 and "for operators" in refused.json()["detail"], path
    token = ISSUER.token("customer", sub="c-1")
    assert client.post("/login", json={"token": token}).status_code == 403
    assert "set-cookie" not in client.post("/login", json={"token": token}).headers
    roleless = client.get("/api/config", headers=ISSUER.bearer(sub="nobody"))
    assert roleless.status_code == 403


def test_a_bad_bearer_token_is_401_naming_why(console):
    client, _ = console
    expired = ISSUER.token("admin", sub="ops", ttl_seconds=-60)
    for header, reason in (
        ("Bearer nonsense", "malformed token"),
        (f"Bearer {expired}", "token expired"),
        ("Basic b3BzOnB3", "must be 'Bearer <token>'"),
    ):
        refused = client.get("/api/config", headers={"authorization": header})
        assert refused.status_code == 401 and reason in refused.json()["detail"], header


def test_a_login_link_works_once_and_gives_an_admin_session_with_a_strict_cookie(console):
    client, _ = console
    path = _link_path(console)
    # Opening the link (a preview, a prefetch, a HEAD) shows a button and redeems nothing.
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200 and 'id="login-link"' in page.text and "set-cookie" not in page.headers
    assert client.head(path).status_code == 200
    landed = _redeem(client, path)
    assert landed.status_code == 303 and landed.headers["location"] == "/"
    cookie = landed.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    session = client.get("/api/config").json()["session"]
    assert session["caller"] == "console-login" and session["roles"] == ["admin"] and session["csrf"]

    client.cookies.clear()
    again = _redeem(client, path)
    assert again.status_code == 401 and "used already" in again.json()["detail"]
    assert client.get("/api/config").status_code == 401


def test_a_forged_or_mangled_link_is_refused(console):
    client, _ = console
    path = _link_path(console)
    other = Sessions(b"o" * 32, session_seconds=60, link_seconds=60).link_token()
    for token in (other, path.split("=", 1)[1][:-2] + "xx", "a.b.c", "", "x" * 5000, "\u00e9.AAAA", "²" * 50 + ".A"):
        refused = client.post("/login/link", data={"token": token}, follow_redirects=False)
        assert refused.status_code in (400, 401) and "set-cookie" not in refused.headers, token[:20]
    # A cookie no console signed (non-ASCII, mangled, oversized) is a 401, never a 500.
    for cookie in ("\u00e9.AAAA", "a.b", "x" * 5000, "A" * 10 + "." + "B" * 43):
        header = f"{SESSION_COOKIE}={cookie}".encode()  # as sent, UTF-8 bytes and all
        assert client.get("/api/config", headers={"cookie": header}).status_code == 401, cookie[:20]


def test_a_sessions_change_needs_its_csrf_token_and_logging_out_ends_it(console, redis):
    client, _ = console
    _redeem(client, _link_path(console))
    csrf = client.get("/api/config").json()["session"]["csrf"]
    path = "/api/streams/orders.events/dead-letters/replay-all"
    refused = client.post(path, json={"confirm": "orders.events"})
    assert refused.status_code == 403 and "x-csrf-token" in refused.json()["detail"]
    assert client.post(path, json={"confirm": "orders.events"}, headers={"x-csrf-token": "guess"}).status_code == 403
    done = client.post(path, json={"confirm": "orders.events"}, headers={"x-csrf-token": csrf})
    assert done.status_code == 200 and done.json() == {"stream": "orders.events", "replayed": []}
    cookie = client.cookies[SESSION_COOKIE]
    assert client.post("/logout", headers={"x-csrf-token": csrf}).status_code == 204
    assert client.get("/api/config").status_code == 401
    # The cookie kept (copied before logging out) is refused too: the session is over, not just forgotten.
    client.cookies.set(SESSION_COOKIE, cookie)
    refused = client.get("/api/config")
    assert refused.status_code == 401 and "logged out" in refused.json()["detail"]


def test_a_jwt_trades_for_a_session_with_its_roles_until_it_expires(console):
    client, _ = console
    token = ISSUER.token("admin", sub="ops-7", ttl_seconds=600)
    answer = client.post("/login", json={"token": token})
    assert answer.status_code == 200 and answer.json()["caller"] == "ops-7" and answer.json()["roles"] == ["admin"]
    assert answer.json()["expires_at"] <= jwt.decode(token, options={"verify_signature": False})["exp"]
    assert client.get("/api/config").json()["session"]["caller"] == "ops-7"
    client.cookies.clear()
    refused = client.post("/login", json={"token": "not-a-jwt"})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers
    assert client.post("/login", json={"token": token, "extra": 1}).status_code == 400
    # An identity too large for a cookie a browser keeps is refused at the door, not stored broken.
    crowded = ISSUER.token("admin", *[f"role-{n:02d}-" + "x" * 50 for n in range(60)], sub="ops-8")
    too_big = client.post("/login", json={"token": crowded})
    assert too_big.status_code == 400 and "too large" in too_big.json()["detail"]


def test_an_admin_bearer_needs_no_csrf(console):
    client, _ = console
    response = client.post("/api/streams/s/dead-letters/replay-all", json={"confirm": "s"}, headers=ADMIN)
    assert response.status_code == 200


def test_a_short_secret_or_unreadable_key_stops_start_up_naming_it(tmp_path, redis_server):
    with pytest.raises(SettingsError) as refused:
        create_app(console_settings(tmp_path, redis_server, console_secret="short", jwt_public_key_file="/nope.pem"))
    assert "CONSOLE_SECRET" in str(refused.value) and "/nope.pem" in str(refused.value)


def test_sessions_refuse_tampering_expiry_and_the_wrong_kind():
    now = [1_000_000.0]
    sessions = Sessions(SECRET.encode(), session_seconds=60, link_seconds=30, clock=lambda: now[0])
    cookie, operator = sessions.start("ops", frozenset({"admin"}))
    assert sessions.read_session(cookie).id == "ops" and operator.csrf
    body, mac = cookie.split(".")
    with pytest.raises(InvalidToken, match="not signed"):
        sessions.read_session(body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac)
    with pytest.raises(InvalidToken, match="not a session"):
        sessions.read_session(sessions.link_token())
    with pytest.raises(InvalidToken, match="not a link"):
        sessions.read_link(cookie)
    now[0] += 61
    with pytest.raises(InvalidToken, match="expired"):
        sessions.read_session(cookie)
    capped, _ = sessions.start("ops", frozenset(), not_after=now[0] + 5)
    assert sessions.read_session(capped).expires_at == int(now[0] + 5)
