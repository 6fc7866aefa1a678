"""The git commit stamped into a PEX at package time, as /info and --version report it."""

from __future__ import annotations

import sys
import types

import pytest

from flotilla_kit.info import stamped_revision
from flotilla_kit.settings import ServiceSettings


@pytest.fixture
def stamp(monkeypatch):
    def stamped(version: str) -> None:
        module = types.ModuleType("flotilla_kit.build_stamp")
        module.SCM_VERSION = version  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "flotilla_kit.build_stamp", module)

    return stamped


@pytest.mark.parametrize(
    ("version", "revision"),
    [
        ("0.1.dev42+g1a2b3c4", "1a2b3c4"),
        ("0.1.dev42+g1a2b3c4.d20261129", "1a2b3c4-dirty"),
        ("1.2.3", None),  # exactly on a tag: setuptools_scm leaves the commit out
        ("garbage", None),
    ],
)
def test_the_commit_is_read_from_setuptools_scms_version(stamp, version, revision):
    stamp(version)
    assert stamped_revision() == revision


def test_from_the_sources_there_is_no_stamp_and_the_revision_is_unknown_unless_set():
    assert "flotilla_kit.build_stamp" not in sys.modules
    assert stamped_revision() is None
    assert ServiceSettings().resolved_git_revision() == "unknown"
    assert ServiceSettings(git_revision="abc1234").resolved_git_revision() == "abc1234"


def test_a_set_revision_wins_over_the_stamp(stamp):
    stamp("0.1.dev42+g1a2b3c4")
    assert ServiceSettings().resolved_git_revision() == "1a2b3c4"
    assert ServiceSettings(git_revision="deadbee").resolved_git_revision() == "deadbee"
