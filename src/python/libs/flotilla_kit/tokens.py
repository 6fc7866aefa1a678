"""Bearer token verification (RS256 or EdDSA JWTs) and the caller identity it yields.

The gateway verifies every public request with it; the console verifies its operators' tokens.
The gateway writes the identity into headers of every upstream request (``x-caller-id``,
``x-caller-roles``), so a token is accepted only when its identity is made of safe identifiers,
whoever signed it: a line break there would end the header and let the token's author write
headers, or a whole second request, of their choosing (issue 10). The rules:

- ``sub``: 1 to 256 characters of visible ASCII (``!`` to ``~``): no spaces, controls or
  non-ASCII characters. Identity providers' subjects fit (UUIDs, ``auth0|5f7c...``, e-mail
  addresses); anything else is refused rather than re-encoded, so a service sees the subject the
  token holds.
- ``roles``: at most 64, each 1 to 64 characters of ``A-Z a-z 0-9 _ . : -``; no comma, which
  separates roles in ``x-caller-roles``.

A token breaking them is refused like any other invalid token: 401, with a reason that does not
echo the offending value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Asymmetric only: a verifier holds no secret that could mint tokens.
_ALGORITHMS = {RSAPublicKey: "RS256", Ed25519PublicKey: "EdDSA"}

SAFE_SUBJECT = re.compile(r"[!-~]{1,256}")
SAFE_ROLE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_ROLES = 64


@dataclass(frozen=True)
class Caller:
    id: str
    roles: frozenset[str]
    expires_at: float | None = None  # the token's exp (unix seconds)


class TokenRejected(Exception):
    """The request's token is missing or not acceptable; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyConfigError(ValueError):
    """The configured key or JWKS file cannot be used."""


class TokenVerifier:
    def __init__(
        self, *, public_key_file: str = "", jwks_file: str = "", audience: str, issuer: str = "", leeway: float = 5.0
    ) -> None:
        self.audience = audience
        self.issuer = issuer or None
        self.leeway = leeway
        self._keys: dict[str | None, tuple[Any, str]] = {}  # kid -> (key, algorithm)
        if public_key_file:
            key = _read_pem(public_key_file)
            self._keys[None] = (key, _algorithm_of(key, public_key_file))
        if jwks_file:
            self._keys.update(_read_jwks(jwks_file))

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def verify(self, authorization: str | None) -> Caller:
        """The caller of a request with this Authorization header; raises TokenRejected."""
        if not authorization:
            raise TokenRejected("this resource needs a bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("the Authorization header must be 'Bearer <token>'")
        if not self._keys:
            raise TokenRejected("no key to verify tokens with is configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenRejected("malformed token") from None
        key, algorithm = self._key_for(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("token is not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("token comes from an unknown issuer") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("token signature is invalid") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid token: {exc}") from None
        return _caller_of(claims)

    def _key_for(self, kid: object) -> tuple[Any, str]:
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if None in self._keys:
            return self._keys[None]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise TokenRejected("token names no key known here (kid)")


def _caller_of(claims: dict[str, Any]) -> Caller:
    subject, roles = claims["sub"], claims.get("roles", [])
    if not isinstance(subject, str) or not SAFE_SUBJECT.fullmatch(subject):
        raise TokenRejected("the sub claim is not a safe identifier (1 to 256 visible ASCII characters)")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokenRejected("the roles claim must be a list of strings")
    if len(roles) > MAX_ROLES or not all(SAFE_ROLE.fullmatch(role) for role in roles):
        raise TokenRejected(
            f"the roles claim is not a safe identifier list (at most {MAX_ROLES}, each 1 to 64 of A-Z a-z 0-9 _ . : -)"
        )
    expires = claims["exp"]
    return Caller(
        id=subject, roles=frozenset(roles), expires_at=float(expires) if isinstance(expires, int | float) else None
    )


def _read_pem(path: str) -> Any:
    try:
        return load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyConfigError(f"JWT_PUBLIC_KEY_FILE={path!r}: {exc}") from None


def _algorithm_of(key: Any, source: str) -> str:
    for key_type, algorithm in _ALGORITHMS.items():
        if isinstance(key, key_type):
            return algorithm
    raise KeyConfigError(f"{source}: only RSA (RS256) and Ed25519 (EdDSA) public keys are accepted")


def _read_jwks(path: str) -> dict[str | None, tuple[Any, str]]:
    try:
        jwk_set = jwt.PyJWKSet.from_json(Path(path).read_text())
    except (OSError, jwt.PyJWKSetError, ValueError) as exc:
        raise KeyConfigError(f"JWKS_FILE={path!r}: {exc}") from None
    keys: dict[str | None, tuple[Any, str]] = {}
    for jwk in jwk_set.keys:
        keys[jwk.key_id] = (jwk.key, _algorithm_of(jwk.key, f"JWKS_FILE={path!r} key {jwk.key_id!r}"))
    return keys
