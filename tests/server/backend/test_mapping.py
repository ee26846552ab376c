"""mapping_config.json: reading (every invalid form is logged and ignored, as OVMS does) and
applying it to a real OpenVINO model's signature, shape and layout settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import ovtest_models
import pytest

from ovserve.server.backend.mapping import MAX_MAPPING_BYTES, TensorMapping, read_mapping, served_names
from ovserve.server.backend.openvino import OpenVINOBackend
from ovserve.server.config import ModelConfig
from ovserve.server.errors import ModelLoadError

pytestmark = pytest.mark.timeout(60)


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mapping_config.json").write_text(text)
    return folder


def test_no_file_is_no_mapping(tmp_path: Path) -> None:
    assert read_mapping(str(tmp_path)) == TensorMapping()
    assert not read_mapping(str(tmp_path))


def test_both_sections(tmp_path: Path) -> None:
    doc = {"inputs": {"data": "new_key"}, "outputs": {"prob": "gender", "age": "age_out"}}
    mapping = read_mapping(str(write(tmp_path, json.dumps(doc))))
    assert mapping == TensorMapping({"data": "new_key"}, {"prob": "gender", "age": "age_out"})


@pytest.mark.parametrize(
    ("text", "expected", "log"),
    [
        ('{"inputs": {"a": "x"', TensorMapping(), "is not a valid JSON file"),
        ("[1, 2]", TensorMapping(), "is not a JSON object"),
        ('{"inputs": {"a": 1}, "outputs": {"y": "z"}}', TensorMapping({}, {"y": "z"}),
         "Couldn't load inputs object from file"),
        ('{"inputs": {"a": "x"}, "outputs": ["y"]}', TensorMapping({"a": "x"}, {}),
         "Couldn't load outputs object from file"),
        ('{"inputs": {"a": "x"}, "other": {}}', TensorMapping(),
         "unexpected key 'other'"),
        ("\xff\xfe", TensorMapping(), "is not a valid JSON file"),
    ],
)
def test_invalid_files_are_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, expected: TensorMapping,
    log: str,
) -> None:
    folder = tmp_path / "1"
    folder.mkdir()
    (folder / "mapping_config.json").write_bytes(text.encode("latin-1"))
    with caplog.at_level(logging.WARNING, logger="ovserve.server.backend.mapping"):
        assert read_mapping(str(folder)) == expected
    assert any(log in r.getMessage() for r in caplog.records), caplog.text


def test_a_file_over_the_bound_is_not_read(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    pad = " " * MAX_MAPPING_BYTES
    folder = write(tmp_path, '{"inputs": {"a": "x"}}' + pad)
    with caplog.at_level(logging.ERROR, logger="ovserve.server.backend.mapping"):
        assert read_mapping(str(folder)) == TensorMapping()
    assert f"larger than {MAX_MAPPING_BYTES} bytes" in caplog.text


def test_served_names(caplog: pytest.LogCaptureFixture) -> None:
    assert served_names(["a", "b"], {"a": "x", "zz": "unused"}, "inputs", "f") == ["x", "b"]
    with caplog.at_level(logging.WARNING, logger="ovserve.server.backend.mapping"):
        assert served_names(["a", "b"], {"a": "b"}, "inputs", "f") == ["a", "b"]
        assert served_names(["a", "b"], {"a": "z", "b": "z"}, "inputs", "f") == ["a", "b"]
    assert caplog.text.count("it gives two inputs the name") == 2


def load(version: Path, **kw: Any) -> Any:
    return OpenVINOBackend().load(str(version), ModelConfig(name="m", base_path=str(version.parent),
                                                            **kw))


async def test_backend_serves_mapped_names(tmp_path: Path) -> None:
    version = ovtest_models.multi_output_model(tmp_path / "multi")
    write(version, json.dumps({"inputs": {"x": "features"}, "outputs": {"total": "sum_out"}}))
    model = load(version)
    assert [s.name for s in model.signature.inputs] == ["features"]
    assert [s.name for s in model.signature.outputs] == ["double", "sum_out"]
    out = await model.infer({"features": np.ones((2, 4), np.float32)})
    assert list(out) == ["double", "sum_out"]
    np.testing.assert_array_equal(out["sum_out"], [4.0, 4.0])
    model.close()


def test_layout_and_shape_settings_use_mapped_names(tmp_path: Path) -> None:
    version = ovtest_models.image_model(tmp_path / "img", height=4, width=6)
    write(version, json.dumps({"inputs": {"image": "picture"}, "outputs": {"mean": "avg"}}))
    model = load(version, shape={"picture": "(2,4,6,3)"}, layout={"picture": "NHWC"})
    assert model.signature.inputs[0].name == "picture"
    assert model.signature.inputs[0].shape_text() == "(2,4,6,3)"
    assert model.signature.inputs[0].layout == "NHWC"
    model.close()
    with pytest.raises(ModelLoadError) as caught:
        load(version, layout={"image": "NHWC"})
    assert str(caught.value) == ("Layout from config has real name. Use mapped name instead - "
                                 "image is mapped to picture by mapping_config.json")
    with pytest.raises(ModelLoadError) as caught:
        load(version, shape={"nothing": "(1,4,6,3)"})
    assert str(caught.value) == "Shape from config not found in model: nothing"
