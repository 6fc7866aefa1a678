"""`deploy render --output DIR` touches only what render owns: it refuses a folder that is not an earlier
render target, deletes only files an earlier render wrote in folders it writes now, never removes
folders, and answers bad values with one line naming them (exit 2), never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deploy.cli import main
from deploy.render import HEADER
from k8s.conftest import MANIFESTS


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (None for a folder): equal trees, nothing touched."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A scratch project with YAML of its own and an empty nested folder."""
    root = tmp_path / "project"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yaml").write_text("on: push\n")
    (root / "docs").mkdir()
    (root / "docs" / "openapi.yaml").write_text("openapi: 3.1.0\n")
    (root / "empty" / "deeper").mkdir(parents=True)
    return root


def test_rendering_into_a_project_that_is_no_render_target_is_refused_and_changes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(project)
    monkeypatch.chdir(project)
    assert main(["render", "--output", "."]) == 2
    assert main(["render", "--output", str(project)]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("deploy: --output .: not empty and not an earlier render target")
    assert errors[1].startswith(f"deploy: --output {project}: not empty and not an earlier render target")
    assert tree(project) == before


def test_an_empty_output_is_refused_and_changes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(project)
    monkeypatch.chdir(project)
    assert main(["render", "--output", ""]) == 2
    assert main(["render", "--check", "--output", ""]) == 2
    assert (
        capsys.readouterr().err.splitlines()
        == ["deploy: --output '': empty; name a directory (default: deploy/k8s)"] * 2
    )
    assert tree(project) == before


def test_render_writes_into_a_new_or_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for output in (tmp_path / "new" / "k8s", tmp_path / "empty"):
        assert main(["render", "--output", str(output)]) == 0
        assert main(["render", "--check", "--output", str(output)]) == 0
        assert tree(output) == tree(MANIFESTS)


def test_render_deletes_only_its_own_leftovers_in_folders_it_writes_and_keeps_everything_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "k8s"
    shutil.copytree(MANIFESTS, output)
    ours = output / "base" / "catalog" / "old-configmap.yaml"
    ours.write_text(HEADER + "kind: ConfigMap\n")
    kept = {
        # hand-written, in a folder render writes
        output / "base" / "catalog" / "notes.yaml": "kind: ConfigMap\n",
        # written by a render, but of a service (or overlay) no longer rendered: not render's folder now
        output / "base" / "retired" / "deployment.yaml": HEADER + "kind: Deployment\n",
        output / "overlays" / "staging" / "kustomization.yaml": HEADER + "kind: Kustomization\n",
        # outside render's layout altogether, even with the header
        output / "docs" / "openapi.yaml": "openapi: 3.1.0\n",
        output / "base" / "catalog" / "deeper" / "x.yaml": HEADER,
        output / "top.yaml": HEADER,
    }
    for path, content in kept.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    (output / "empty" / "deeper").mkdir(parents=True)
    (output / "overlays" / "empty").mkdir()
    capsys.readouterr()

    assert main(["render", "--output", str(output)]) == 0

    assert not ours.exists()
    assert {path: path.read_text() for path in kept} == kept
    assert (output / "empty" / "deeper").is_dir() and (output / "overlays" / "empty").is_dir()
    out, errors = capsys.readouterr()
    assert "base/catalog/old-configmap.yaml" in out
    for name in ("base/catalog/notes.yaml", "base/retired/deployment.yaml", "overlays/staging/kustomization.yaml"):
        assert f"kept {output / name}: not rendered" in errors
    assert "openapi" not in errors and "top.yaml" not in errors


def test_an_output_below_a_file_is_refused_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("")
    for argv in (["render"], ["render", "--check"]):
        assert main([*argv, "--output", str(target / "sub")]) == 2
        assert capsys.readouterr().err == f"deploy: --output {target}/sub: not a directory ({target} is a file)\n"
    assert target.read_text() == ""


def test_check_against_a_file_says_it_is_not_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0::/root:/bin/sh\n")
    assert main(["render", "--check", "--output", str(target)]) == 2
    assert capsys.readouterr().err == f"deploy: --output {target}: not a directory\n"


def test_check_against_a_missing_directory_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "--check", "--output", str(tmp_path / "nowhere")]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"deploy: --output {tmp_path}/nowhere: no such directory")


def test_check_calls_a_non_utf8_manifest_stale_and_a_directory_in_its_place_stale(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "k8s"
    shutil.copytree(MANIFESTS, output)
    (output / "base" / "orders" / "deployment.yaml").write_bytes(b"\xff\xfe not utf-8\n")
    (output / "base" / "orders" / "service.yaml").unlink()
    (output / "base" / "orders" / "service.yaml").mkdir()
    assert main(["render", "--check", "--output", str(output)]) == 1
    errors = capsys.readouterr().err
    assert f"stale: {output}/base/orders/deployment.yaml\n" in errors
    assert f"stale: {output}/base/orders/service.yaml (a directory, not a file)\n" in errors
    # render will not delete a folder someone made: it says so and changes nothing
    before = tree(output)
    assert main(["render", "--output", str(output)]) == 2
    assert capsys.readouterr().err == (
        f"deploy: {output}/base/orders/service.yaml is a directory where render writes a file: remove it\n"
    )
    assert tree(output) == before
