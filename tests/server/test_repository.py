"""Scanning an OVMS-layout model repository for numeric version folders."""

from __future__ import annotations

import os
from pathlib import Path

from ovserve.server import repository


def test_scan_keeps_only_positive_numeric_folders(tmp_path: Path) -> None:
    for name in ("1", "3", "10", "0", "01", "-2", "v4", "tmp", "1.5", "٣"):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a folder")
    (tmp_path / "README.md").write_text("hi")
    assert repository.scan(str(tmp_path)) == [1, 3, 10]


def test_scan_follows_symlinked_version_folders(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "base").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "base" / "2")
    os.symlink(tmp_path / "nowhere", tmp_path / "base" / "3")
    assert repository.scan(str(tmp_path / "base")) == [2]


def test_scan_of_missing_base_path_is_empty(tmp_path: Path) -> None:
    assert repository.scan(str(tmp_path / "missing")) == []
    assert repository.scan(str(tmp_path / "file")) == []


def test_inspect_reports_why_nothing_can_be_served(tmp_path: Path) -> None:
    missing = repository.inspect(str(tmp_path / "missing"))
    assert missing.versions == ()
    assert missing.error == f"{repository.NO_BASE_PATH}: {tmp_path / 'missing'}"
    assert "does not exist" in missing.error

    (tmp_path / "empty" / "latest").mkdir(parents=True)
    empty = repository.inspect(str(tmp_path / "empty"))
    assert empty.versions == ()
    assert empty.error is not None
    assert empty.error.startswith("Not a single model version directory has valid numeric name")

    (tmp_path / "ok" / "2").mkdir(parents=True)
    (tmp_path / "ok" / "1").mkdir()
    assert repository.inspect(str(tmp_path / "ok")) == repository.ScanResult((1, 2), None)


def test_version_dir() -> None:
    assert repository.version_dir("/models/m", 3) == os.path.join("/models/m", "3")


def test_fingerprint_changes_with_files(tmp_path: Path) -> None:
    folder = tmp_path / "1"
    assert repository.fingerprint(str(folder)) == ()
    folder.mkdir()
    (folder / "model.xml").write_text("<net/>")
    first = repository.fingerprint(str(folder))
    assert [entry[0] for entry in first] == ["model.xml"]
    assert repository.fingerprint(str(folder)) == first
    (folder / "variables").mkdir()
    (folder / "variables" / "data").write_bytes(b"1234")
    second = repository.fingerprint(str(folder))
    assert [entry[:2] for entry in second] == [
        ("model.xml", 6),
        (os.path.join("variables", "data"), 4),
    ]
