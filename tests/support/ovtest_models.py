"""Build small real OpenVINO models for the tests (nothing is downloaded).

Each builder writes ``<base>/<version>/model.xml`` + ``model.bin`` with OpenVINO's Python API
and returns the version folder. Used by the server, operator and bench suites.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops


def _save(model: ov.Model, base: Path, version: int) -> Path:
    folder = Path(base) / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)
    return folder


def add_model(base: Path, version: int = 1, shape: tuple[int, ...] = (-1, 2, 2), offset: float = 0.0) -> Path:
    """``sum = a + b (+ offset)``, float32, dynamic batch by default. Output name ``sum``."""
    a = ops.parameter(list(shape), np.float32, name="a")
    b = ops.parameter(list(shape), np.float32, name="b")
    out = ops.add(a, b)
    if offset:
        out = ops.add(out, ops.constant(np.float32(offset)))
    out.output(0).set_names({"sum"})
    return _save(ov.Model([out], [a, b], "add"), base, version)


def identity_model(base: Path, version: int = 1, shape: tuple[int, ...] = (-1, 3, 224, 224),
                   dtype: type = np.float32, name: str = "x", out_name: str = "y") -> Path:
    """``y = x * 1`` of any dtype and shape (large-tensor and dtype tests)."""
    x = ops.parameter(list(shape), dtype, name=name)
    if dtype == np.bool_:
        y = ops.logical_not(ops.logical_not(x))
    else:
        y = ops.multiply(x, ops.constant(np.array(1, dtype=dtype)))
    y.output(0).set_names({out_name})
    return _save(ov.Model([y], [x], "identity"), base, version)


def multi_output_model(base: Path, version: int = 1) -> Path:
    """x: f32 [-1,4] → ``double`` (x*2, f32 [-1,4]) and ``total`` (sum over axis 1, f32 [-1])."""
    x = ops.parameter([-1, 4], np.float32, name="x")
    double = ops.multiply(x, ops.constant(np.float32(2.0)))
    double.output(0).set_names({"double"})
    total = ops.reduce_sum(x, ops.constant(np.array([1], dtype=np.int64)), keep_dims=False)
    total.output(0).set_names({"total"})
    return _save(ov.Model([double, total], [x], "multi"), base, version)


def scale_model(base: Path, version: int = 1, dtype: type = np.int32, factor: int = 3,
                shape: tuple[int, ...] = (-1, 3)) -> Path:
    """``y = x * factor`` for integer or fp16 types."""
    x = ops.parameter(list(shape), dtype, name="x")
    y = ops.multiply(x, ops.constant(np.array(factor, dtype=dtype)))
    y.output(0).set_names({"y"})
    return _save(ov.Model([y], [x], "scale"), base, version)


def image_model(base: Path, version: int = 1, height: int = 4, width: int = 6) -> Path:
    """NHWC uint8-friendly image model: x f32 [-1,H,W,3] → ``mean`` per channel, f32 [-1,3]."""
    x = ops.parameter([-1, height, width, 3], np.float32, name="image")
    x.get_output_tensor(0).set_names({"image"})
    mean = ops.reduce_mean(x, ops.constant(np.array([1, 2], dtype=np.int64)), keep_dims=False)
    mean.output(0).set_names({"mean"})
    model = ov.Model([mean], [x], "image")
    model.inputs[0].get_node().set_layout(ov.Layout("NHWC"))
    return _save(model, base, version)


def string_model(base: Path, version: int = 1, name: str = "text", out_name: str = "echo") -> Path:
    """STRING identity: ``echo = pack(unpack(text))``, shape ``[-1]`` (BYTES / DT_STRING tests).

    A Parameter wired straight to a Result would share its tensor names, so the strings go
    through ``StringTensorUnpack`` → ``StringTensorPack`` (opset15).
    """
    from openvino import opset15

    x = opset15.parameter([-1], ov.Type.string, name=name)
    parts = opset15.string_tensor_unpack(x)
    y = opset15.string_tensor_pack(parts.output(0), parts.output(1), parts.output(2))
    y.output(0).set_names({out_name})
    return _save(ov.Model([y], [x], "strings"), base, version)
