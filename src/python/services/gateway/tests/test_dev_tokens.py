"""`gateway keygen` and `gateway token` give what the gateway's verifier accepts, and refuse bad claims."""

from __future__ import annotations

import pytest

from flotilla_kit.cli import EXIT_USAGE, main
from flotilla_kit.tokens import TokenVerifier
from gateway.__main__ import SERVICE


def test_a_minted_token_is_accepted_by_the_verifier_with_its_subject_and_roles(tmp_path, capsys):
    assert main(SERVICE, ["keygen", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    private, public = tmp_path / "jwt-private.pem", tmp_path / "jwt-public.pem"
    assert private.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only

    assert main(SERVICE, ["token", "--private-key", str(private), "--sub", "alice", "--roles", "admin, user"]) == 0
    token = capsys.readouterr().out.strip()

    caller = TokenVerifier(public_key_file=str(public), audience="flotilla").verify(f"Bearer {token}")
    assert caller.id == "alice"
    assert caller.roles == {"admin", "user"}


def test_keygen_does_not_overwrite_keys_unless_forced(tmp_path, capsys):
    assert main(SERVICE, ["keygen", "--out", str(tmp_path)]) == 0
    first = (tmp_path / "jwt-private.pem").read_bytes()
    assert main(SERVICE, ["keygen", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "jwt-private.pem").read_bytes() == first
    assert main(SERVICE, ["keygen", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "jwt-private.pem").read_bytes() != first


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--sub", "alice\r\nx-caller-roles: admin", "--sub"),
        ("--sub", "a b", "--sub"),
        ("--roles", "admin,a b", "'a b'"),
    ],
)
def test_a_token_with_claims_the_gateway_would_refuse_is_not_minted(tmp_path, capsys, option, value, named):
    main(SERVICE, ["keygen", "--out", str(tmp_path)])
    args = {"--sub": "alice", "--roles": "admin", option: value}
    argv = ["token", "--private-key", str(tmp_path / "jwt-private.pem")]
    for name, given in args.items():
        argv += [name, given]
    capsys.readouterr()
    assert main(SERVICE, argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert named in captured.err


def test_a_missing_private_key_is_named(tmp_path, capsys):
    assert main(SERVICE, ["token", "--private-key", str(tmp_path / "nope.pem"), "--sub", "alice"]) == EXIT_USAGE
    assert "nope.pem" in capsys.readouterr().err
