"""Fixtures shared by the gateway's tests."""

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@pytest.fixture
def public_key_file(tmp_path) -> Path:
    """A PEM Ed25519 public key for JWT_PUBLIC_KEY_FILE (its private half is not kept: no token verifies)."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    path = tmp_path / "public.pem"
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path
