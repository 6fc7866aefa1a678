import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from flotilla_kit.tokens import KeyConfigError, TokenRejected, TokenVerifier


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def ed_key():
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def verifier(tmp_path, ed_key):
    (tmp_path / "public.pem").write_bytes(_pem(ed_key))
    return TokenVerifier(public_key_file=str(tmp_path / "public.pem"), audience="flotilla")


def _token(key, algorithm="EdDSA", **claims):
    body = {"sub": "u1", "aud": "flotilla", "exp": int(time.time()) + 60, "roles": ["admin"], **claims}
    return "Bearer " + jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


def test_a_valid_token_gives_the_caller(verifier, ed_key):
    caller = verifier.verify(_token(ed_key))
    assert caller.id == "u1" and caller.roles == frozenset({"admin"})


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda key: None, "needs a bearer token"),
        (lambda key: "Basic dTpw", "must be 'Bearer <token>'"),
        (lambda key: "Bearer not.a.token", "malformed token"),
        (lambda key: _token(key, exp=int(time.time()) - 600), "token expired"),
        (lambda key: _token(key, aud="someone-else"), "not meant for this audience"),
        (lambda key: _token(ed25519.Ed25519PrivateKey.generate()), "signature is invalid"),
        (lambda key: _token(key, sub=None), "invalid token"),
        (lambda key: _token(key, roles="admin"), "roles claim must be a list"),
    ],
)
def test_unacceptable_tokens_are_rejected_with_a_reason(verifier, ed_key, make, reason):
    with pytest.raises(TokenRejected, match=reason):
        verifier.verify(make(ed_key))


def test_a_token_signed_with_another_algorithm_is_rejected(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(_pem(rsa_key))
    rsa_verifier = TokenVerifier(public_key_file=str(tmp_path / "rsa.pem"), audience="flotilla")
    assert rsa_verifier.verify(_token(rsa_key, algorithm="RS256")).id == "u1"
    with pytest.raises(TokenRejected):
        rsa_verifier.verify(_token(rsa_key, algorithm="RS512"))  # only the algorithm of the key is accepted


def test_keys_can_come_from_a_jwks_file_by_kid(tmp_path, ed_key):
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed_key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig"}]}))
    verifier = TokenVerifier(jwks_file=str(tmp_path / "jwks.json"), audience="flotilla")
    token = jwt.encode(
        {"sub": "u2", "aud": "flotilla", "exp": int(time.time()) + 60}, ed_key, algorithm="EdDSA", headers={"kid": "k1"}
    )
    assert verifier.verify("Bearer " + token).id == "u2"


def test_unusable_key_files_are_refused_naming_the_setting(tmp_path):
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(KeyConfigError, match="JWT_PUBLIC_KEY_FILE"):
        TokenVerifier(public_key_file=str(tmp_path / "bad.pem"), audience="x")
    with pytest.raises(KeyConfigError, match="JWKS_FILE"):
        TokenVerifier(jwks_file=str(tmp_path / "missing.json"), audience="x")


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "u1\r\nx-caller-roles: admin"},
        {"sub": "u1\nx"},
        {"sub": "u1\x00"},
        {"sub": "a b"},
        {"sub": "u\u20ac1"},
        {"sub": "\u00fc"},
        {"sub": ""},
        {"sub": "x" * 257},
        {"roles": ["admin\r\nx-caller-id: root"]},
        {"roles": ["admin,root"]},
        {"roles": ["a b"]},
        {"roles": [""]},
        {"roles": ["r" * 65]},
        {"roles": [f"r{i}" for i in range(65)]},
    ],
)
def test_a_token_whose_identity_is_not_a_safe_identifier_is_rejected(verifier, ed_key, claims):
    with pytest.raises(TokenRejected, match="not a safe identifier") as rejected:
        verifier.verify(_token(ed_key, **claims))
    assert "\r" not in rejected.value.reason and "\n" not in rejected.value.reason


@pytest.mark.parametrize(
    "sub, roles",
    [
        ("auth0|5f7c8ec7c33c6c004bbafe82", ["catalog:write", "admin"]),
        ("user@example.com", ["a.b-c_d"]),
        ("3f1b7a52-9a4e-4d5c-8a7e-2b1f0c9d8e7f", []),
        ("x" * 256, ["r" * 64]),
    ],
)
def test_usual_subjects_and_roles_are_accepted(verifier, ed_key, sub, roles):
    caller = verifier.verify(_token(ed_key, sub=sub, roles=roles))
    assert caller.id == sub and caller.roles == frozenset(roles)
