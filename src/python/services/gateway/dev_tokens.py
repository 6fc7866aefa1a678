"""``gateway keygen`` and ``gateway token``: a key pair and signed tokens for trying the gateway locally.

Production tokens come from an identity provider; the gateway itself only ever holds a public key.
These commands let a developer run the whole path without one: ``keygen`` writes an Ed25519 pair,
``token`` signs a short-lived JWT with the private key, carrying the claims the gateway checks
(``sub``, ``roles``, ``aud``, ``exp``, ``iat``, and ``iss`` when given).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from flotilla_kit.cli import EXIT_USAGE, Command


def _configure_keygen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=".", help="folder for jwt-private.pem and jwt-public.pem (default: .)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")


def _keygen(args: argparse.Namespace, settings: Any) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    out = Path(args.out)
    private_path, public_path = out / "jwt-private.pem", out / "jwt-public.pem"
    existing = [str(p) for p in (private_path, public_path) if p.exists()]
    if existing and not args.force:
        print(f"keygen: {', '.join(existing)} already exist (use --force to overwrite)", file=sys.stderr)
        return EXIT_USAGE
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Owner-only from the first byte: created 0600, and an overwritten file made 0600 before writing.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if args.force else os.O_EXCL), 0o600)
    with os.fdopen(fd, "wb") as private_file:
        os.fchmod(fd, 0o600)
        private_file.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    print(f"wrote {private_path} (keep it secret) and {public_path} (give it to the gateway: JWT_PUBLIC_KEY_FILE)")
    return 0


def _configure_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--private-key", required=True, help="PEM private key (Ed25519 or RSA) that signs the token")
    parser.add_argument("--sub", required=True, help="the caller's id (printable ASCII, no spaces)")
    parser.add_argument("--roles", default="", help="comma-separated roles, e.g. admin")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    parser.add_argument("--audience", help="aud claim (default: JWT_AUDIENCE of the settings)")
    parser.add_argument("--issuer", help="iss claim (default: JWT_ISSUER of the settings, if set)")
    parser.add_argument("--kid", help="key id header, for a gateway that verifies against a JWKS")


def _token(args: argparse.Namespace, settings: Any) -> int:
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    # The gateway's own rules for the claims it accepts, checked here so that a typo is refused
    # when the token is minted rather than with a 401 later.
    from flotilla_kit.tokens import SAFE_ROLE, SAFE_SUBJECT

    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    problems = []
    if not SAFE_SUBJECT.fullmatch(args.sub):
        problems.append(f"--sub {args.sub!r}: 1-256 printable ASCII characters, no spaces")
    problems += [
        f"--roles: {role!r} is not a role name ([A-Za-z0-9_.:-], 1-64)"
        for role in roles
        if not SAFE_ROLE.fullmatch(role)
    ]
    if args.ttl <= 0:
        problems.append(f"--ttl {args.ttl}: must be positive")
    try:
        key = load_pem_private_key(Path(args.private_key).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        problems.append(f"--private-key {args.private_key!r}: {exc}")
        key = None
    algorithm = "EdDSA" if isinstance(key, Ed25519PrivateKey) else "RS256" if isinstance(key, RSAPrivateKey) else None
    if key is not None and algorithm is None:
        problems.append(f"--private-key {args.private_key!r}: only Ed25519 and RSA keys sign gateway tokens")
    if problems or not isinstance(key, Ed25519PrivateKey | RSAPrivateKey):
        print("token: " + "; ".join(problems), file=sys.stderr)
        return EXIT_USAGE
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": args.sub,
        "roles": roles,
        "aud": args.audience or settings.jwt_audience,
        "iat": now,
        "exp": now + args.ttl,
    }
    issuer = args.issuer or settings.jwt_issuer
    if issuer:
        claims["iss"] = issuer
    print(jwt.encode(claims, key, algorithm=algorithm, headers={"kid": args.kid} if args.kid else None))
    return 0


keygen_command = Command(
    name="keygen", help="write an Ed25519 key pair for signing test tokens", configure=_configure_keygen, run=_keygen
)
token_command = Command(
    name="token", help="print a signed JWT for trying the gateway locally", configure=_configure_token, run=_token
)
