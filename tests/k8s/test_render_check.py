"""`deploy render` reproduces the committed deploy/k8s/ byte for byte, and --check says what is stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deploy.cli import main
from deploy.render import HEADER, stale
from k8s.conftest import MANIFESTS


def test_the_committed_manifests_are_what_render_produces(rendered: dict[str, str]) -> None:
    assert stale(rendered, MANIFESTS) == []


def test_rendering_twice_gives_the_same_bytes(rendered: dict[str, str]) -> None:
    from deploy.render import rendered_files
    from deploy.services import all_services

    assert rendered_files(all_services()) == rendered


def test_check_exits_non_zero_naming_a_changed_a_missing_and_an_extra_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(MANIFESTS, copy)
    assert main(["render", "--check", "--output", str(copy)]) == 0
    (copy / "base" / "orders" / "deployment.yaml").write_text("edited by hand\n")
    (copy / "base" / "catalog" / "pdb.yaml").unlink()
    (copy / "base" / "catalog" / "leftover.yaml").write_text(HEADER + "kind: ConfigMap\n")
    capsys.readouterr()
    assert main(["render", "--check", "--output", str(copy)]) == 1
    errors = capsys.readouterr().err
    assert f"stale: {copy}/base/orders/deployment.yaml" in errors
    assert f"missing: {copy}/base/catalog/pdb.yaml" in errors
    assert f"not rendered any more: {copy}/base/catalog/leftover.yaml" in errors
    # render puts it right again, and removes what an earlier render wrote and it no longer renders
    assert main(["render", "--output", str(copy)]) == 0
    assert main(["render", "--check", "--output", str(copy)]) == 0
    assert not (copy / "base" / "catalog" / "leftover.yaml").exists()


def test_check_names_a_hand_written_yaml_among_the_manifests_which_render_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(MANIFESTS, copy)
    (copy / "base" / "catalog" / "notes.yaml").write_text("kind: ConfigMap\n")
    assert main(["render", "--check", "--output", str(copy)]) == 1
    assert (
        f"not rendered (render keeps it: remove it by hand): {copy}/base/catalog/notes.yaml" in capsys.readouterr().err
    )
    assert main(["render", "--output", str(copy)]) == 0
    assert f"kept {copy}/base/catalog/notes.yaml" in capsys.readouterr().err
    assert (copy / "base" / "catalog" / "notes.yaml").read_text() == "kind: ConfigMap\n"


def test_an_output_that_is_a_file_is_refused_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("")
    assert main(["render", "--output", str(target)]) == 2
    assert "not a directory" in capsys.readouterr().err
