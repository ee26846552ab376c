"""ensure_demo_model: builds a servable ``a + b`` model once, atomically, and never rebuilds it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ovserve.server.backend import openvino as ov_backend
from ovserve.server.backend.demo import ensure_demo_model
from ovserve.server.backend.openvino import OpenVINOBackend
from ovserve.server.config import ModelConfig
from ovserve.server.types import Dim

pytestmark = pytest.mark.timeout(60)


def entries(base: Path) -> list[str]:
    return sorted(os.listdir(base))


async def test_builds_a_servable_sum_model(tmp_path: Path) -> None:
    base = tmp_path / "models" / "demo"
    assert ensure_demo_model(str(base)) == str(base)
    assert entries(base) == ["1"]
    assert sorted(os.listdir(base / "1")) == ["model.bin", "model.xml"]
    model = OpenVINOBackend().load(str(base / "1"), ModelConfig(name="demo", base_path=str(base)))
    sig = model.signature
    assert [(s.name, s.precision, s.shape) for s in sig.inputs] == [
        ("a", "FP32", (Dim(0, -1), Dim(4, 4))),
        ("b", "FP32", (Dim(0, -1), Dim(4, 4))),
    ]
    assert [(s.name, s.precision) for s in sig.outputs] == [("sum", "FP32")]
    out = await model.infer({
        "a": np.array([[1, 2, 3, 4]], dtype=np.float32),
        "b": np.array([[10, 20, 30, 40]], dtype=np.float32),
    })
    np.testing.assert_array_equal(out["sum"], [[11, 22, 33, 44]])
    model.close()


def test_second_call_keeps_the_existing_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "demo"
    ensure_demo_model(str(base))
    before = (base / "1" / "model.xml").stat()

    def must_not_build(xml_path: str) -> None:
        raise AssertionError(f"rebuilt {xml_path}")

    monkeypatch.setattr(ov_backend, "save_sum_model", must_not_build)
    assert ensure_demo_model(str(base)) == str(base)
    after = (base / "1" / "model.xml").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert entries(base) == ["1"]


def test_any_ir_in_version_one_counts_as_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "demo"
    (base / "1").mkdir(parents=True)
    (base / "1" / "custom.xml").write_text("<net/>")
    monkeypatch.setattr(ov_backend, "save_sum_model", lambda xml_path: None)
    ensure_demo_model(str(base))
    assert sorted(os.listdir(base / "1")) == ["custom.xml"]


def test_crash_while_building_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "demo"

    def half_written(xml_path: str) -> None:
        Path(xml_path).write_text("<net")  # a partial file, then the build dies
        raise OSError("disk full")

    monkeypatch.setattr(ov_backend, "save_sum_model", half_written)
    with pytest.raises(OSError, match="disk full"):
        ensure_demo_model(str(base))
    assert entries(base) == []  # no "1" folder and no staging folder
    monkeypatch.undo()
    ensure_demo_model(str(base))
    assert sorted(os.listdir(base / "1")) == ["model.bin", "model.xml"]


def test_empty_version_folder_is_filled(tmp_path: Path) -> None:
    base = tmp_path / "demo"
    (base / "1").mkdir(parents=True)
    ensure_demo_model(str(base))
    assert sorted(os.listdir(base / "1")) == ["model.bin", "model.xml"]
    assert entries(base) == ["1"]
