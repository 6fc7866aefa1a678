"""`release asyncapi` answers bad arguments with one line naming the bad value and a non-zero exit
(2 bad use, 1 stale), never a traceback, and changes nothing when it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from release.cli import main

ROOT = Path(__file__).resolve().parents[5]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.mark.parametrize("argv", [["asyncapi", "--output", ""], ["--root", "", "asyncapi"], ["--root", " ", "check"]])
def test_an_empty_path_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "an empty path" in err and "Traceback" not in err


def test_an_output_that_is_a_directory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["asyncapi"], ["asyncapi", "--check"]):
        assert main(["--root", str(ROOT), *argv, "--output", str(tmp_path)]) == 2
        assert one_line(capsys) == f"asyncapi: --output {tmp_path}: is a directory; name the document's file"
    assert list(tmp_path.iterdir()) == []


def test_an_output_in_a_missing_directory_is_refused_and_the_directory_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "dir" / "asyncapi.json"
    assert main(["--root", str(ROOT), "asyncapi", "--output", str(target)]) == 2
    assert one_line(capsys) == f"asyncapi: --output {target}: no such directory: {target.parent}"
    assert not (tmp_path / "missing").exists()


def test_an_output_below_a_file_is_refused_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("keep\n")
    for argv in (["asyncapi"], ["asyncapi", "--check"]):
        assert main(["--root", str(ROOT), *argv, "--output", str(file / "asyncapi.json")]) == 2
        assert one_line(capsys) == f"asyncapi: --output {file}/asyncapi.json: not a directory: {file}"
    assert file.read_text() == "keep\n"


def test_check_calls_a_non_utf8_document_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = tmp_path / "asyncapi.json"
    document.write_bytes(b"\xff\xfe{}")
    assert main(["--root", str(ROOT), "asyncapi", "--check", "--output", str(document)]) == 1
    err = capsys.readouterr().err
    assert f"asyncapi: {document} is stale" in err
    assert "not UTF-8 text: invalid start byte at byte 0" in err
    assert "Traceback" not in err
    assert document.read_bytes() == b"\xff\xfe{}"


def test_a_root_that_is_missing_or_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "file"
    file.write_text("")
    assert main(["--root", str(tmp_path / "nowhere"), "asyncapi"]) == 2
    assert one_line(capsys) == f"release: --root {tmp_path}/nowhere: no such directory"
    assert main(["--root", str(file), "asyncapi", "--check"]) == 2
    assert one_line(capsys) == f"release: --root {file}: not a directory"


def test_a_root_that_is_no_repository_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--root", str(tmp_path), "asyncapi"]) == 2
    assert one_line(capsys) == (
        f"asyncapi: {tmp_path.resolve()} is not the repository root (no src/python/services in it): "
        "run it there or pass --root"
    )
    assert list(tmp_path.iterdir()) == []
