"""Who is using the console: operators with the gateway's JWTs, or a session from a one-time login link.

Three ways in, one identity (an ``Operator``: an id and roles):

- ``Authorization: Bearer <JWT>`` on any API call (scripts): verified as the gateway verifies it.
- A session cookie, made when a browser
  - opens a one-time login link (``/login?token=...``, which ``stack up`` prints, as Aspire's
    dashboard prints its browser token): the operator ``console-login`` with role ``admin``;
  - or posts a JWT to ``/login``: the token's subject and roles, until the token expires.

Link tokens and session cookies are signed with the console's secret (HMAC-SHA256) and carry their
expiry and kind, so one is never taken for the other. A link's nonce is recorded when it is
redeemed, so it works once. A session carries a random CSRF token: every state-changing request of
a cookie session must repeat it in ``X-CSRF-Token`` (the page reads it from ``/api/config``); the
cookie is also ``HttpOnly`` and ``SameSite=Strict``. A session's id is recorded when it logs out,
so its cookie stops working at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from flotilla_kit.tokens import SAFE_ROLE, SAFE_SUBJECT

SESSION_COOKIE = "flotilla_console"
CSRF_HEADER = "x-csrf-token"
LINK_OPERATOR = "console-login"
MIN_SECRET_BYTES = 32
# Signed values are small (a browser keeps cookies up to 4 KB); anything longer is refused unread.
MAX_SIGNED_LENGTH = 4000
_SIGNED = re.compile(r"[A-Za-z0-9_-]{1,3956}\.[A-Za-z0-9_-]{43}")  # base64url body, base64url HMAC-SHA256


@dataclass(frozen=True)
class Operator:
    id: str
    roles: frozenset[str]
    # The session's CSRF token; None for a bearer token (no cookie, so no cross-site request carries it).
    csrf: str | None = None
    expires_at: float | None = None
    session_id: str | None = None  # what logging out revokes; None for a bearer token


class _Signed(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: str  # "link" or "session"
    exp: int  # unix seconds
    nonce: str = ""  # links: what makes them one-time
    sub: str = ""
    roles: list[str] = []
    csrf: str = ""
    sid: str = ""  # the session's id: logging out revokes it


class InvalidToken(Exception):
    """A link token or session cookie that is forged, expired, malformed or of the wrong kind; the
    message is safe to show (it never echoes the value)."""


class Sessions:
    """Makes and reads login link tokens and session cookies with one secret."""

    def __init__(
        self, secret: bytes, *, session_seconds: float, link_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the console secret must be at least {MIN_SECRET_BYTES} bytes long")
        self._key = hashlib.sha256(b"flotilla-console\0" + secret).digest()
        self.session_seconds = session_seconds
        self.link_seconds = link_seconds
        self._clock = clock

    # ------------------------------------------------------------------ login links

    def link_token(self) -> str:
        """A new one-time login token, valid for ``link_seconds``."""
        expires = int(self._clock() + self.link_seconds)
        return self._sign(_Signed(kind="link", exp=expires, nonce=secrets.token_urlsafe(16)))

    def read_link(self, token: str) -> tuple[str, int]:
        """The (nonce, expiry) of a valid, unexpired link token; the caller makes sure the nonce is new."""
        signed = self._read(token, "link")
        return signed.nonce, signed.exp

    # ------------------------------------------------------------------ sessions

    def start(self, caller_id: str, roles: frozenset[str], *, not_after: float | None = None) -> tuple[str, Operator]:
        """A session cookie value for this operator, and the operator (with the session's CSRF token)."""
        expires = self._clock() + self.session_seconds
        if not_after is not None:
            expires = min(expires, not_after)
        signed = _Signed(
            kind="session",
            exp=int(expires),
            sub=caller_id,
            roles=sorted(roles),
            csrf=secrets.token_urlsafe(24),
            sid=secrets.token_urlsafe(16),
        )
        value = self._sign(signed)
        if len(value) > MAX_SIGNED_LENGTH:
            raise InvalidToken("the identity is too large for a session (too many or too long roles)")
        return value, Operator(caller_id, roles, csrf=signed.csrf, expires_at=signed.exp, session_id=signed.sid)

    def read_session(self, cookie: str) -> Operator:
        signed = self._read(cookie, "session")
        roles = frozenset(signed.roles)
        # Signed by us, so made by ``start``; checked again all the same (a leaked old secret, a bug).
        if not SAFE_SUBJECT.fullmatch(signed.sub) or not all(SAFE_ROLE.fullmatch(role) for role in roles):
            raise InvalidToken("the session names an unsafe identity")
        return Operator(signed.sub, roles, csrf=signed.csrf, expires_at=signed.exp, session_id=signed.sid)

    # ------------------------------------------------------------------ signing

    def _sign(self, value: _Signed) -> str:
        body = _b64(msgspec.json.encode(value))
        return f"{body}.{_b64(self._mac(body))}"

    def _mac(self, body: str) -> bytes:
        return hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()

    def _read(self, text: str, kind: str) -> _Signed:
        if not _SIGNED.fullmatch(text):  # also refuses anything not ASCII before it is encoded
            raise InvalidToken(f"malformed {kind}")
        body, mac = text.split(".")
        given = _unb64(mac)
        if not hmac.compare_digest(given, self._mac(body)):
            raise InvalidToken(f"the {kind} is not signed by this console")
        try:
            value = msgspec.json.decode(_unb64(body), type=_Signed)
        except (ValueError, msgspec.DecodeError):
            raise InvalidToken(f"malformed {kind}") from None
        if value.kind != kind:
            raise InvalidToken(f"not a {kind}")
        if value.exp <= self._clock():
            raise InvalidToken(f"the {kind} has expired")
        return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error: a length no encoder makes
        raise InvalidToken("malformed") from None


def secret_bytes(configured: str) -> bytes:
    """The console's secret from its setting, or a random one (sessions then end with the process)."""
    return configured.encode() if configured else secrets.token_bytes(MIN_SECRET_BYTES)
