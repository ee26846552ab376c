"""OpenVINOBackend / OpenVINOModel against real OpenVINO: loading, config, signatures, inference.

Models come from ``ovtest_models`` or are built here with OpenVINO's Python API (and ``onnx``
for the ONNX case). Concurrency and cancellation waits are bounded by the module timeout.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import ovtest_models
import pytest
from openvino import opset13 as ops

from ovserve.server.backend.base import InferTiming
from ovserve.server.backend.openvino import OpenVINOBackend, OpenVINOModel, find_model_file
from ovserve.server.config import ModelConfig
from ovserve.server.errors import InferenceFailed, InvalidInput, ModelLoadError
from ovserve.server.types import Dim

pytestmark = pytest.mark.timeout(60)

F32 = np.float32
CHANNEL_WEIGHTS = np.array([1, 10, 100], dtype=F32).reshape(1, 3, 1, 1)


@pytest.fixture(scope="module")
def core() -> ov.Core:
    return ov.Core()


@pytest.fixture
def backend(core: ov.Core) -> OpenVINOBackend:
    return OpenVINOBackend(core)


def cfg(version_dir: Path, **kw: Any) -> ModelConfig:
    return ModelConfig(name="m", base_path=str(version_dir.parent), **kw)


def load(backend: OpenVINOBackend, version_dir: Path, **kw: Any) -> OpenVINOModel:
    return backend.load(str(version_dir), cfg(version_dir, **kw))


def save(model: ov.Model, base: Path, version: int = 1) -> Path:
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    return folder


def nchw_model(base: Path) -> Path:
    """x f32 [-1,3,2,5] (NCHW, no layout set) -> y = x * [1,10,100] per channel."""
    x = ops.parameter([-1, 3, 2, 5], F32, name="x")
    y = ops.multiply(x, ops.constant(CHANNEL_WEIGHTS))
    y.output(0).set_names({"y"})
    return save(ov.Model([y], [x], "nchw"), base)


def dims(*pairs: tuple[int, int] | int) -> tuple[Dim, ...]:
    return tuple(Dim(p, p) if isinstance(p, int) else Dim(*p) for p in pairs)


# ---------------------------------------------------------------- signatures


def test_add_model_signature_has_dynamic_batch(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"))
    sig = model.signature
    assert [s.name for s in sig.inputs] == ["a", "b"]
    assert [s.name for s in sig.outputs] == ["sum"]
    assert sig.inputs[0].precision == "FP32"
    assert sig.inputs[0].shape == (Dim(0, -1), Dim(2, 2), Dim(2, 2))
    assert sig.outputs[0].shape == (Dim(0, -1), Dim(2, 2), Dim(2, 2))
    assert sig.inputs[0].layout == ""
    model.close()


@pytest.mark.parametrize(
    ("dtype", "precision"),
    [(np.float16, "FP16"), (np.int32, "I32"), (np.int64, "I64"), (np.uint8, "U8"),
     (np.int8, "I8"), (np.float64, "FP64"), (np.uint16, "U16"), (np.bool_, "BOOL")],
)
async def test_precisions_and_round_trip(
    backend: OpenVINOBackend, tmp_path: Path, dtype: type, precision: str
) -> None:
    version = ovtest_models.identity_model(tmp_path / "id", shape=(-1, 3), dtype=dtype)
    model = load(backend, version)
    assert model.signature.inputs[0].precision == precision
    assert model.signature.outputs[0].precision == precision
    data: np.ndarray = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    out = await model.infer({"x": data})
    assert out["y"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out["y"], data)
    model.close()


async def test_fp16_and_int32_scale_models(backend: OpenVINOBackend, tmp_path: Path) -> None:
    half = load(backend, ovtest_models.scale_model(tmp_path / "h", dtype=np.float16, factor=2))
    ints = load(backend, ovtest_models.scale_model(tmp_path / "i", dtype=np.int32, factor=3))
    assert half.signature.inputs[0].precision == "FP16"
    assert ints.signature.outputs[0].precision == "I32"
    x16 = np.array([[0.5, 1.5, -2.0]], dtype=np.float16)
    np.testing.assert_array_equal((await half.infer({"x": x16}))["y"], x16 * 2)
    x32 = np.array([[1, -2, 7], [0, 5, 9]], dtype=np.int32)
    np.testing.assert_array_equal((await ints.infer({"x": x32}))["y"], x32 * 3)
    half.close()
    ints.close()


async def test_multi_output_order_and_values(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.multi_output_model(tmp_path / "multi"))
    assert [s.name for s in model.signature.outputs] == ["double", "total"]
    assert model.signature.outputs[1].shape == (Dim(0, -1),)
    x = np.arange(8, dtype=F32).reshape(2, 4)
    out = await model.infer({"x": x})
    assert list(out) == ["double", "total"]
    np.testing.assert_allclose(out["double"], x * 2)
    np.testing.assert_allclose(out["total"], x.sum(axis=1))
    model.close()


def test_image_model_reports_nhwc_layout(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.image_model(tmp_path / "img", height=4, width=6))
    spec = model.signature.inputs[0]
    assert (spec.name, spec.layout) == ("image", "NHWC")
    assert spec.shape == dims((0, -1), 4, 6, 3)
    model.close()


async def test_bf16_input_and_output(backend: OpenVINOBackend, tmp_path: Path) -> None:
    x = ops.parameter([-1, 2], ov.Type.bf16, name="x")
    as_f32 = ops.convert(x, ov.Type.f32)
    as_f32.output(0).set_names({"f"})
    back = ops.convert(ops.multiply(as_f32, ops.constant(np.float32(2))), ov.Type.bf16)
    back.output(0).set_names({"twice"})
    model = load(backend, save(ov.Model([as_f32, back], [x], "bf16"), tmp_path / "bf"))
    assert model.signature.inputs[0].precision == "BF16"
    assert [s.precision for s in model.signature.outputs] == ["FP32", "BF16"]
    words = np.array([[0x3F80, 0x4040]], dtype=np.uint16)  # 1.0, 3.0 in bfloat16
    out = await model.infer({"x": words})
    np.testing.assert_array_equal(out["f"], [[1.0, 3.0]])
    assert out["twice"].dtype == np.uint16
    np.testing.assert_array_equal(out["twice"], [[0x4000, 0x40C0]])  # 2.0, 6.0
    # float32 values are rounded to bfloat16 words on the way in
    out = await model.infer({"x": np.array([[1.0, -0.5]], dtype=F32)})
    np.testing.assert_array_equal(out["f"], [[1.0, -0.5]])
    model.close()


async def test_string_input_and_output(backend: OpenVINOBackend, tmp_path: Path) -> None:
    s = ops.parameter([-1], ov.Type.string, name="s")
    model = load(backend, save(ov.Model([ops.result(s)], [s], "strings"), tmp_path / "str"))
    assert model.signature.inputs[0].precision == "STRING"
    assert model.signature.outputs[0].precision == "STRING"
    data = np.array([b"hello", b"", b"\xff\x00bin"], dtype=object)
    out = await model.infer({"s": data})
    result = out[model.signature.outputs[0].name]
    assert result.dtype == object
    assert list(result) == [b"hello", b"", b"\xff\x00bin"]
    model.close()


# ---------------------------------------------------------------- shape, batch, layout


def test_shape_string_applies_to_all_inputs(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), shape="(2,2,2)")
    assert [s.shape for s in model.signature.inputs] == [dims(2, 2, 2)] * 2
    assert model.signature.outputs[0].shape == dims(2, 2, 2)
    model.close()


async def test_shape_dict_with_range_and_auto(backend: OpenVINOBackend, tmp_path: Path) -> None:
    version = ovtest_models.add_model(tmp_path / "add")
    model = load(backend, version, shape={"a": "(1:3,2,2)", "b": "auto"})
    assert model.signature.inputs[0].shape == dims((1, 3), 2, 2)
    assert model.signature.inputs[1].shape == dims((0, -1), 2, 2)
    out = await model.infer({"a": np.ones((3, 2, 2), F32), "b": np.ones((3, 2, 2), F32)})
    np.testing.assert_array_equal(out["sum"], np.full((3, 2, 2), 2, F32))
    model.close()


def test_shape_minus_one_makes_a_static_dim_dynamic(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    version = ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2))
    model = load(backend, version, shape={"a": "(-1,2,2)", "b": "(-1,2,2)"})
    assert model.signature.inputs[0].shape == dims((0, -1), 2, 2)
    model.close()


def test_shape_for_unknown_input(backend: OpenVINOBackend, tmp_path: Path) -> None:
    version = ovtest_models.add_model(tmp_path / "add")
    with pytest.raises(ModelLoadError) as err:
        load(backend, version, shape={"nope": "(1,2,2)"})
    assert str(err.value) == "Shape from config not found in model: nope"


def test_shape_the_model_cannot_take(backend: OpenVINOBackend, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load(backend, nchw_model(tmp_path / "nchw"), shape="(1,4,2,5)")  # 4 channels, not 3
    assert str(err.value).startswith("Model could not be reshaped with requested shape (1,4,2,5)")


def test_batch_size_without_layout_sets_dim_zero(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), batch_size=3)
    assert [s.shape for s in model.signature.inputs] == [dims(3, 2, 2)] * 2
    model.close()


def test_batch_size_uses_the_layout_batch_dim(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.image_model(tmp_path / "img"), batch_size=5)
    assert model.signature.inputs[0].shape == dims(5, 4, 6, 3)
    assert model.signature.outputs[0].shape == dims(5, 3)
    model.close()


def test_batch_size_ignored_when_shape_set(
    backend: OpenVINOBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version = ovtest_models.add_model(tmp_path / "add")
    with caplog.at_level(logging.WARNING, logger="ovserve.server.backend.openvino"):
        model = load(backend, version, shape="(4,2,2)", batch_size=7)
    assert model.signature.inputs[0].shape == dims(4, 2, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "Model m: batch_size is ignored because shape is set"
    ]
    model.close()


@pytest.mark.parametrize("layout", ["NHWC:NCHW", {"x": "NHWC:NCHW"}])
async def test_layout_transposes_served_input(
    backend: OpenVINOBackend, tmp_path: Path, layout: Any
) -> None:
    model = load(backend, nchw_model(tmp_path / "nchw"), layout=layout)
    spec = model.signature.inputs[0]
    assert spec.layout == "NHWC"
    assert spec.shape == dims((0, -1), 2, 5, 3)
    nhwc = np.random.default_rng(1).random((2, 2, 5, 3), dtype=F32)
    out = await model.infer({"x": nhwc})
    np.testing.assert_allclose(out["y"], nhwc.transpose(0, 3, 1, 2) * CHANNEL_WEIGHTS, rtol=1e-6)
    model.close()


def test_layout_then_shape_in_served_layout(backend: OpenVINOBackend, tmp_path: Path) -> None:
    version = nchw_model(tmp_path / "nchw")
    model = load(backend, version, layout="NHWC:NCHW", shape="(1,2,5,3)")
    assert model.signature.inputs[0].shape == dims(1, 2, 5, 3)
    assert model.signature.outputs[0].shape == dims(1, 3, 2, 5)
    model.close()


async def test_output_layout_transposes_output(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, nchw_model(tmp_path / "nchw"), layout={"y": "NHWC:NCHW"})
    assert model.signature.outputs[0].shape == dims((0, -1), 2, 5, 3)
    assert model.signature.outputs[0].layout == "NHWC"
    x = np.random.default_rng(2).random((1, 3, 2, 5), dtype=F32)
    out = await model.infer({"x": x})
    np.testing.assert_allclose(out["y"], (x * CHANNEL_WEIGHTS).transpose(0, 2, 3, 1), rtol=1e-6)
    model.close()


def test_plain_layout_only_labels_the_input(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, nchw_model(tmp_path / "nchw"), layout="NCHW")
    assert model.signature.inputs[0].layout == "NCHW"
    assert model.signature.inputs[0].shape == dims((0, -1), 3, 2, 5)
    model.close()


def test_layout_for_unknown_tensor(backend: OpenVINOBackend, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load(backend, nchw_model(tmp_path / "nchw"), layout={"nope": "NHWC:NCHW"})
    assert str(err.value) == "Layout from config not found in model: nope"


@pytest.mark.parametrize("layout", ["NHWC:NCHW", "NHWCC:NCHW"])
def test_layout_that_cannot_apply(backend: OpenVINOBackend, tmp_path: Path, layout: str) -> None:
    # rank 4 layout on a rank 2 input; a layout naming C twice
    model_dir = (ovtest_models.multi_output_model(tmp_path / "m") if layout == "NHWC:NCHW"
                 else nchw_model(tmp_path / "nchw"))
    with pytest.raises(ModelLoadError) as err:
        load(backend, model_dir, layout=layout)
    assert str(err.value).startswith(f"Cannot apply layout {layout}: ")
    assert "Exception from" not in str(err.value)


# ---------------------------------------------------------------- device and plugin config


@pytest.mark.parametrize("device", ["NONEXISTENT", "GPU"])
def test_unusable_device(backend: OpenVINOBackend, tmp_path: Path, device: str) -> None:
    # This machine has no GPU: the GPU plugin cannot load its OpenCL runtime.
    with pytest.raises(ModelLoadError) as err:
        load(backend, ovtest_models.add_model(tmp_path / "add"), target_device=device)
    text = str(err.value)
    assert text.startswith(f"Cannot compile model into target device: {device} - ")
    assert "Exception from" not in text
    assert len(text) > len(f"Cannot compile model into target device: {device} - ")
    if device == "NONEXISTENT":
        assert 'Device with "NONEXISTENT" name is not registered' in text


@pytest.mark.parametrize("plugin_config", [{"BAD_KEY": 1}, {"NUM_STREAMS": "many"}])
def test_bad_plugin_config(
    backend: OpenVINOBackend, tmp_path: Path, plugin_config: dict[str, Any]
) -> None:
    with pytest.raises(ModelLoadError) as err:
        load(backend, ovtest_models.add_model(tmp_path / "add"), plugin_config=plugin_config)
    text = str(err.value)
    assert text.startswith("Plugin config is in wrong format: ")
    assert next(iter(plugin_config)) in text or "many" in text


def test_streams_and_nireq_from_plugin_config(backend: OpenVINOBackend, tmp_path: Path) -> None:
    version = ovtest_models.add_model(tmp_path / "add")
    auto = load(backend, version, plugin_config={"NUM_STREAMS": 2})
    assert (auto.streams, auto.nireq) == (2, 2)  # nireq 0 = OPTIMAL_NUMBER_OF_INFER_REQUESTS
    fixed = load(backend, version, nireq=3, plugin_config={"NUM_STREAMS": "1"})
    assert (fixed.streams, fixed.nireq) == (1, 3)
    legacy = load(backend, version, plugin_config={"CPU_THROUGHPUT_STREAMS": "CPU_THROUGHPUT_AUTO"})
    assert legacy.streams >= 1
    for model in (auto, fixed, legacy):
        model.close()


@pytest.mark.parametrize("device", ["AUTO", "MULTI:CPU", "HETERO:CPU"])
async def test_virtual_devices(backend: OpenVINOBackend, tmp_path: Path, device: str) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), target_device=device)
    assert model.nireq >= 1 and model.streams >= 1
    out = await model.infer({"a": np.ones((1, 2, 2), F32), "b": np.ones((1, 2, 2), F32)})
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 2, F32))
    model.close()


@pytest.mark.parametrize("allow_cache", [True, False])
def test_cache_dir(core: ov.Core, tmp_path: Path, allow_cache: bool) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    backend = OpenVINOBackend(core, cache_dir=str(cache))
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), allow_cache=allow_cache)
    assert bool(os.listdir(cache)) is allow_cache
    model.close()


# ---------------------------------------------------------------- model files


def test_missing_model_names_the_folder(backend: OpenVINOBackend, tmp_path: Path) -> None:
    folder = tmp_path / "empty" / "1"
    folder.mkdir(parents=True)
    (folder / "README.txt").write_text("no model here")
    with pytest.raises(ModelLoadError) as err:
        load(backend, folder)
    assert str(err.value) == (
        f"No model found in {folder}: expected an OpenVINO IR (*.xml + *.bin) or an ONNX "
        "(*.onnx) file"
    )


def test_missing_folder(backend: OpenVINOBackend, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load(backend, tmp_path / "gone" / "1")
    assert str(err.value).startswith(f"Cannot read model folder {tmp_path / 'gone' / '1'}")


def test_several_models_are_ambiguous(backend: OpenVINOBackend, tmp_path: Path) -> None:
    folder = ovtest_models.add_model(tmp_path / "add")
    shutil.copy(folder / "model.xml", folder / "other.xml")
    shutil.copy(folder / "model.bin", folder / "other.bin")
    with pytest.raises(ModelLoadError) as err:
        load(backend, folder)
    assert str(err.value).startswith(
        f"Several model files found in {folder}: model.xml, other.xml;"
    )


def test_xml_without_bin(backend: OpenVINOBackend, tmp_path: Path) -> None:
    folder = ovtest_models.add_model(tmp_path / "add")
    (folder / "model.bin").rename(folder / "weights.dat")
    with pytest.raises(ModelLoadError) as err:
        load(backend, folder)
    assert str(err.value) == (
        f"Model file model.xml in {folder} has no matching model.bin weights file"
    )


async def test_arbitrary_ir_file_names(backend: OpenVINOBackend, tmp_path: Path) -> None:
    folder = ovtest_models.add_model(tmp_path / "add", offset=1.0)
    (folder / "model.xml").rename(folder / "my-net.xml")
    (folder / "model.bin").rename(folder / "my-net.bin")
    assert find_model_file(str(folder)) == str(folder / "my-net.xml")
    model = load(backend, folder)
    out = await model.infer({"a": np.ones((1, 2, 2), F32), "b": np.ones((1, 2, 2), F32)})
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 3, F32))
    model.close()


def test_unreadable_model(backend: OpenVINOBackend, tmp_path: Path) -> None:
    folder = tmp_path / "bad" / "1"
    folder.mkdir(parents=True)
    (folder / "model.xml").write_text("<net>not a model")
    (folder / "model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError) as err:
        load(backend, folder)
    assert str(err.value).startswith(f"Cannot read model {folder / 'model.xml'}: ")


async def test_onnx_model(backend: OpenVINOBackend, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["left", "right"], ["total"])],
        "adder",
        [helper.make_tensor_value_info("left", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("right", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 3])],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx_model.ir_version = 8
    folder = tmp_path / "onnx" / "1"
    folder.mkdir(parents=True)
    onnx.save(onnx_model, str(folder / "adder.onnx"))
    model = load(backend, folder)
    assert [s.name for s in model.signature.inputs] == ["left", "right"]
    assert model.signature.outputs[0].name == "total"
    assert model.signature.inputs[0].shape == dims((0, -1), 3)
    left = np.arange(6, dtype=F32).reshape(2, 3)
    out = await model.infer({"left": left, "right": left})
    np.testing.assert_array_equal(out["total"], left * 2)
    model.close()


# ---------------------------------------------------------------- inference


def add_inputs(a: float, batch: int = 1) -> dict[str, np.ndarray]:
    return {"a": np.full((batch, 2, 2), a, F32), "b": np.ones((batch, 2, 2), F32)}


async def test_concurrent_infers_share_the_pool(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=2)
    model.inline = False  # these tests exercise the infer request pool
    assert model.nireq == 2
    seen: list[int] = []

    async def one(i: int) -> np.ndarray:
        timing = InferTiming()
        task = asyncio.ensure_future(model.infer(add_inputs(float(i), batch=1 + i % 3), timing))
        await asyncio.sleep(0)
        seen.append(model.active_requests)
        out = await task
        assert timing.infer_us > 0 and timing.wait_us >= 0
        return out["sum"]

    results = await asyncio.gather(*(one(i) for i in range(50)))
    for i, total in enumerate(results):
        np.testing.assert_array_equal(total, np.full((1 + i % 3, 2, 2), i + 1, F32))
    assert max(seen) == 2
    assert model.active_requests == 0
    model.close()


async def test_runtime_failure_raises_and_frees_the_request(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    bad = {"a": np.ones((2, 2, 2), F32), "b": np.ones((3, 2, 2), F32)}  # batches do not match
    for _ in range(2):
        with pytest.raises(InferenceFailed) as err:
            await model.infer(bad)
        assert "Exception from" not in str(err.value)
        assert "mismatch" in str(err.value)
    assert model.active_requests == 0
    out = await model.infer(add_inputs(4.0))
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 5, F32))
    model.close()


async def test_cancelled_failing_request_is_returned(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    model.inline = False  # these tests exercise the infer request pool
    task = asyncio.ensure_future(
        model.infer({"a": np.ones((2, 2, 2), F32), "b": np.ones((3, 2, 2), F32)})
    )
    await asyncio.sleep(0)  # started; it fails on an OpenVINO thread and no callback comes
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = await asyncio.wait_for(model.infer(add_inputs(2.0)), 30)
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 3, F32))
    assert model.active_requests == 0
    model.close()


async def test_wrong_shape_fails_before_starting(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2)), nireq=1)
    with pytest.raises(InferenceFailed) as err:
        await model.infer({"a": np.ones((1, 3, 2), F32), "b": np.ones((1, 2, 2), F32)})
    assert "Exception from" not in str(err.value)
    assert model.active_requests == 0
    np.testing.assert_array_equal((await model.infer(add_inputs(1.0)))["sum"],
                                  np.full((1, 2, 2), 2, F32))
    model.close()


async def test_missing_input(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    with pytest.raises(InvalidInput) as err:
        await model.infer({"a": np.ones((1, 2, 2), F32)})
    assert str(err.value) == "Missing input with specific name - Required input: b"
    assert (await model.infer(add_inputs(0.0)))["sum"].shape == (1, 2, 2)
    model.close()


async def test_readonly_and_strided_inputs(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"))
    readonly = np.frombuffer(np.arange(8, dtype=F32).tobytes(), dtype=F32).reshape(2, 2, 2)
    strided = np.arange(16, dtype=F32).reshape(2, 2, 4)[:, :, ::2]
    assert not readonly.flags.writeable and not strided.flags.c_contiguous
    out = await model.infer({"a": readonly, "b": strided})
    np.testing.assert_array_equal(out["sum"], readonly + strided)
    model.close()


async def test_outputs_are_copies(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add", shape=(1, 2, 2)), nireq=1)
    first = (await model.infer(add_inputs(1.0)))["sum"]
    second = (await model.infer(add_inputs(5.0)))["sum"]
    np.testing.assert_array_equal(first, np.full((1, 2, 2), 2, F32))
    np.testing.assert_array_equal(second, np.full((1, 2, 2), 6, F32))
    model.close()


async def test_waiting_reports_wait_time(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    model.inline = False  # these tests exercise the infer request pool
    timings = [InferTiming() for _ in range(3)]
    await asyncio.gather(*(model.infer(add_inputs(1.0), t) for t in timings))
    assert timings[0].wait_us < timings[2].wait_us  # the last one waited for the other two
    assert all(t.infer_us > 0 for t in timings)
    model.close()


async def test_cancelled_while_running_returns_request(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.identity_model(tmp_path / "big"), nireq=1)
    # Through the pool only: an inline second call would not need the cancelled call's request
    # back, and could finish before that request's completion callback has run.
    model.inline = False
    big = {"x": np.ones((8, 3, 224, 224), F32)}
    task = asyncio.ensure_future(model.infer(big))
    await asyncio.sleep(0)  # the request is started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = await asyncio.wait_for(model.infer({"x": np.full((1, 3, 224, 224), 2, F32)}), 30)
    assert float(out["y"].mean()) == 2.0
    assert model.active_requests == 0
    model.close()


async def test_cancelled_while_waiting_for_a_request(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    model.inline = False  # these tests exercise the infer request pool
    tasks = [asyncio.ensure_future(model.infer(add_inputs(float(i)))) for i in range(3)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    first, third = await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 30)
    assert tasks[1].cancelled()
    np.testing.assert_array_equal(first["sum"], np.full((1, 2, 2), 1, F32))
    np.testing.assert_array_equal(third["sum"], np.full((1, 2, 2), 3, F32))
    assert model.active_requests == 0
    model.close()


async def test_close_releases_the_model(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=2)
    await model.infer(add_inputs(1.0))
    model.close()
    with pytest.raises(InferenceFailed) as err:
        await model.infer(add_inputs(1.0))
    assert str(err.value) == "Model version is unloaded"
    ref = weakref.ref(model)
    del model, err  # the traceback holds the infer frame
    gc.collect()
    assert ref() is None


async def test_close_fails_calls_in_flight_and_waiting(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.identity_model(tmp_path / "big"), nireq=1)
    big = {"x": np.ones((8, 3, 224, 224), F32)}
    tasks = [asyncio.ensure_future(model.infer(big)) for _ in range(2)]
    await asyncio.sleep(0)  # the first runs, the second waits for a request
    model.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    assert [str(r) for r in results] == ["Model version is unloaded"] * 2
    assert all(isinstance(r, InferenceFailed) for r in results)


def test_unclosed_model_is_collected(backend: OpenVINOBackend, tmp_path: Path) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=2)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None  # callbacks hold weak references: no cycle through OpenVINO


# ------------------------------------------------------------------ the inline path


@pytest.fixture
def roomy_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU budget no machine misses, so these tests check the mechanics, not this machine's
    speed (calibration on a busy CI runner can cost more than the real 500 us)."""
    from ovserve.server.backend import openvino_model

    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 1e9)


@pytest.mark.usefixtures("roomy_budget")
async def test_small_requests_run_inline_with_exact_results(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=2)
    calls: list[int] = []
    inline = model._infer_inline

    def spy(inputs: Any, timing: Any) -> dict[str, np.ndarray]:
        calls.append(1)
        return inline(inputs, timing)

    model._infer_inline = spy  # type: ignore[method-assign]
    for i, batch in enumerate([1, 3, 3, 1, 2, 2]):  # shape changes and repeats: tensor reuse
        timing = InferTiming()
        out = await model.infer(add_inputs(float(i), batch=batch), timing)
        np.testing.assert_array_equal(out["sum"], np.full((batch, 2, 2), i + 1, F32))
        assert timing.wait_us == 0.0 and timing.infer_us > 0
    assert len(calls) == 6 and model.inline
    assert model.active_requests == 0
    model.close()


@pytest.mark.usefixtures("roomy_budget")
async def test_inputs_are_copied_so_callers_may_reuse_their_arrays(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    inputs = add_inputs(1.0, batch=2)
    first = await model.infer(inputs)
    inputs["a"][...] = 5.0  # the same arrays, new values
    second = await model.infer(inputs)
    np.testing.assert_array_equal(first["sum"], np.full((2, 2, 2), 2.0, F32))
    np.testing.assert_array_equal(second["sum"], np.full((2, 2, 2), 6.0, F32))
    model.close()


async def test_a_model_slower_than_the_budget_leaves_the_inline_path(
    backend: OpenVINOBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ovserve.server.backend import openvino_model

    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 1e9)
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    assert model.inline  # calibrated at load within the budget
    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 0.001)  # every model is "slow" now
    calls = 0
    while model.inline and calls < 20:
        out = await model.infer(add_inputs(float(calls)))
        np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), calls + 1, F32))
        calls += 1
    # decided once five costs are known (the calibration is one); the first slow call only
    # turns the CPU clock on and is not counted: on the 5th call
    assert not model.inline and calls == 5, calls
    out = await model.infer(add_inputs(7.0))  # the pool answers the same
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 8.0, F32))
    model.close()
    slow = load(backend, ovtest_models.add_model(tmp_path / "add2"), nireq=1)
    assert not slow.inline  # calibration at load already says "too slow"
    slow.close()


def test_calibration_takes_the_cheapest_of_up_to_three_tries(
    backend: OpenVINOBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One slow try (a busy machine) does not keep a fast model off the inline path; a model
    slow on every try stays off it after three."""
    from ovserve.server.backend import openvino_model

    real = openvino_model._infer_sync
    slow_calls: set[int] = set()
    calls: list[int] = []

    def fake(request: Any, copy: bool = False) -> Any:
        calls.append(1)
        if len(calls) in slow_calls:  # 2 ms of CPU: over the 1 ms budget, under ten times it
            end = time.thread_time() + 0.002  # this thread's: OpenVINO's spin in process time
            while time.thread_time() < end:
                pass
        return real(request, copy)

    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 1000.0)
    monkeypatch.setattr(openvino_model, "_infer_sync", fake)
    slow_calls.add(2)  # call 1 warms up; the first timed try is slow, the second is not
    spent = model.calibrate()
    assert spent is not None and spent <= 1000.0 and model.inline and len(calls) == 3
    calls.clear()
    slow_calls.update({3, 4})  # every timed try is slow
    spent = model.calibrate()
    assert spent is not None and spent >= 2000.0 and not model.inline and len(calls) == 4
    model.close()


async def test_a_run_of_slow_calls_does_not_end_inlining_most_slow_calls_do(
    backend: OpenVINOBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy machine slows a fast model's calls in runs: 6 of the last 9 costs over the budget
    keep it inline (the lower quartile decides), 7 of 9 end inlining. The first slow call of a
    run is not counted (it only turns the CPU clock on), so a run of 7 slow calls gives 6."""
    from ovserve.server.backend import openvino_model

    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 1e9)
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    assert model.inline
    monkeypatch.setattr(openvino_model, "INLINE_MAX_US", 5000.0)
    real = openvino_model._infer_sync
    slow = False

    def fake(request: Any, copy: bool = False) -> Any:
        if slow:  # 10 ms of this thread's CPU: over the 5 ms budget however the call is timed
            end = time.thread_time() + 0.010
            while time.thread_time() < end:
                pass
        return real(request, copy)

    monkeypatch.setattr(openvino_model, "_infer_sync", fake)
    for i, kind in enumerate("F" * 9 + "S" * 7):  # the window full of fast costs, then a run
        slow = kind == "S"
        out = await model.infer(add_inputs(float(i)))
        np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), i + 1, F32))
        assert model.inline, i
    slow = True
    await model.infer(add_inputs(0.0))  # 7 slow of the last 9 costs
    assert not model.inline
    model.close()


async def test_models_that_cannot_be_calibrated_use_the_pool(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.string_model(tmp_path / "s"), nireq=1)
    assert model.calibrate() is None and not model.inline
    model.close()


@pytest.mark.usefixtures("roomy_budget")
async def test_large_inputs_never_run_inline(backend: OpenVINOBackend, tmp_path: Path) -> None:
    from ovserve.server.backend import openvino_model

    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    batch = openvino_model.INLINE_MAX_BYTES // (2 * 2 * 4) + 1  # each input alone is over
    calls: list[int] = []
    model._infer_inline = lambda *a: calls.append(1)  # type: ignore[method-assign,assignment,return-value]
    out = await model.infer(add_inputs(2.0, batch=batch))
    np.testing.assert_array_equal(out["sum"], np.full((batch, 2, 2), 3.0, F32))
    assert calls == []
    model.close()


@pytest.mark.usefixtures("roomy_budget")
async def test_inline_failure_is_an_inference_error_and_frees_the_request(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    model = load(backend, ovtest_models.add_model(tmp_path / "add"), nireq=1)
    bad = {"a": np.ones((3, 2, 2), F32), "b": np.ones((2, 2, 2), F32)}  # no broadcast of 3 and 2
    with pytest.raises(InferenceFailed):
        await model.infer(bad)
    assert model.active_requests == 0
    out = await model.infer(add_inputs(1.0))
    np.testing.assert_array_equal(out["sum"], np.full((1, 2, 2), 2.0, F32))
    model.close()


@pytest.mark.usefixtures("roomy_budget")
async def test_model_whose_smallest_request_is_large_is_not_calibrated(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    from ovserve.server.backend import openvino_model

    # one [3,96,96] float image is 110 592 bytes, over the inline limit: every call uses the pool
    model = load(backend, ovtest_models.identity_model(tmp_path / "id", shape=(-1, 3, 96, 96)),
                 nireq=1)
    assert openvino_model.INLINE_MAX_BYTES < 3 * 96 * 96 * 4
    assert model.calibrate() is None and not model.inline
    calls: list[int] = []
    model._infer_inline = lambda *a: calls.append(1)  # type: ignore[method-assign,assignment,return-value]
    x = np.full((1, 3, 96, 96), 5, F32)
    np.testing.assert_array_equal(next(iter((await model.infer({"x": x})).values())), x)
    assert calls == []
    model.close()
