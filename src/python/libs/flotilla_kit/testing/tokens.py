"""Signed JWTs for tests: an Ed25519 key pair whose public half a gateway or console verifies with."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


class TokenIssuer:
    """Signs tokens as an identity provider would; ``public_key_file`` is what the verifier reads."""

    def __init__(self, directory: Path, *, audience: str = "flotilla") -> None:
        self.private_key = ed25519.Ed25519PrivateKey.generate()
        self.audience = audience
        self.public_key_file = directory / "jwt-public.pem"
        self.public_key_file.write_bytes(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def token(self, *roles: str, sub: str, ttl_seconds: float = 3600, **claims: object) -> str:
        body = {"sub": sub, "aud": self.audience, "exp": int(time.time() + ttl_seconds), "roles": list(roles), **claims}
        return jwt.encode(body, self.private_key, algorithm="EdDSA")

    def bearer(self, *roles: str, sub: str) -> dict[str, str]:
        """An Authorization header for ``sub`` with ``roles``."""
        return {"authorization": f"Bearer {self.token(*roles, sub=sub)}"}
