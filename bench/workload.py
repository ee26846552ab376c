"""The benchmark's models, config.json and request bodies: one definition shared by every target.

Called by :mod:`run` (and :mod:`limit`, which needs the same input arrays). Every target — the
in-process OpenVINO limit, the bare Tornado floor and ovserve — gets exactly these bodies.

Models (built with OpenVINO's Python API into a temporary folder, nothing is downloaded):

* ``add`` — ``tests/support/ovtest_models.add_model``: f32 ``a``, ``b`` ``[-1,2,2]`` -> ``sum``.
* ``pool`` — this module's :func:`pool_model`: f32 ``x`` ``[-1,3,224,224]`` -> ``y`` f32
  ``[-1,1024]`` (mean over 1024 groups of 147 consecutive values). A classifier-shaped output, so
  the large cases measure the 3x224x224 *request* path and the response stays ~20 KB.

Cases (``Case.path`` is ovserve's URL; the floor serves the same body on ``/case/{name}``)::

    small_col  POST /v1/models/add:predict    {"inputs": {"a": [[[..],[..]] x4], "b": [..]}}
    small_row  POST /v1/models/add:predict    {"instances": [{"a": [[..],[..]], "b": ..} x4]}
    large_row  POST /v1/models/pool:predict   {"instances": [<[3,224,224] nested list>]}
    v2_json    POST /v2/models/add/infer      {"inputs": [{"name": "a", "shape": [4,2,2],
                                                "datatype": "FP32", "data": [16 floats]}, ..]}
    v2_binary  POST /v2/models/pool/infer     JSON header + 602112 raw little-endian f32 bytes,
               Inference-Header-Content-Length: <header length>; output y requested as binary
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openvino as ov
from openvino import opset13 as ops

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "support"))

import ovtest_models  # noqa: E402  (tests/support is the shared home of the model builders)

SMALL_SHAPE = (4, 2, 2)
LARGE_SHAPE = (1, 3, 224, 224)
POOL_GROUPS = 1024  # 3*224*224 = 1024 * 147


@dataclass(frozen=True)
class Case:
    """One request shape: where ovserve serves it and the exact bytes every target receives."""

    name: str
    title: str
    path: str
    body: bytes
    model: str
    inputs: dict[str, np.ndarray]
    headers: dict[str, str] = field(default_factory=dict)
    v2: bool = False

    @property
    def floor_path(self) -> str:
        return f"/case/{self.name}"

    @property
    def bare_path(self) -> str:
        return f"/bare/{self.name}"


def pool_model(base: Path, version: int = 1) -> Path:
    """``x`` f32 [-1,3,224,224] -> ``y`` f32 [-1,1024]: the mean of each 147 consecutive values."""
    x = ops.parameter([-1, *LARGE_SHAPE[1:]], np.float32, name="x")
    groups = ops.reshape(x, ops.constant(np.array([0, POOL_GROUPS, -1], dtype=np.int64)), True)
    y = ops.reduce_mean(groups, ops.constant(np.array([2], dtype=np.int64)), keep_dims=False)
    y.output(0).set_names({"y"})
    folder = base / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Model([y], [x], "pool"), str(folder / "model.xml"), compress_to_fp16=False)
    return folder


def build_models(root: Path, nireq: int) -> Path:
    """Write both models and an OVMS ``config.json`` under ``root``; return the config path."""
    ovtest_models.add_model(root / "add")
    pool_model(root / "pool")
    config = {
        "model_config_list": [
            {"config": {"name": "add", "base_path": "add", "nireq": nireq}},
            {"config": {"name": "pool", "base_path": "pool", "nireq": nireq}},
        ]
    }
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def make_cases(seed: int = 7) -> list[Case]:
    """The five request shapes, with deterministic random float32 data (``tolist`` floats)."""
    rng = np.random.default_rng(seed)
    a = rng.random(SMALL_SHAPE, dtype=np.float32)
    b = rng.random(SMALL_SHAPE, dtype=np.float32)
    x = rng.random(LARGE_SHAPE, dtype=np.float32)
    small = {"a": a, "b": b}
    large = {"x": x}
    col = _dumps({"inputs": {"a": a.tolist(), "b": b.tolist()}})
    row = _dumps({"instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(4)]})
    big = _dumps({"instances": x.tolist()})
    v2_json = _dumps({"inputs": [
        {"name": n, "shape": list(SMALL_SHAPE), "datatype": "FP32", "data": v.ravel().tolist()}
        for n, v in small.items()
    ]})
    raw = x.astype("<f4").tobytes()
    header = _dumps({
        "inputs": [{"name": "x", "shape": list(LARGE_SHAPE), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    })
    json_ct = {"Content-Type": "application/json"}
    return [
        Case("small_col", "v1 small, column (inputs)", "/v1/models/add:predict", col, "add",
             small, json_ct),
        Case("small_row", "v1 small, row (instances)", "/v1/models/add:predict", row, "add",
             small, json_ct),
        Case("large_row", "v1 large [1,3,224,224] row", "/v1/models/pool:predict", big, "pool",
             large, json_ct),
        Case("v2_json", "v2 small, JSON", "/v2/models/add/infer", v2_json, "add", small,
             json_ct, v2=True),
        Case("v2_binary", "v2 large [1,3,224,224] binary", "/v2/models/pool/infer",
             header + raw, "pool", large,
             {"Content-Type": "application/octet-stream",
              "Inference-Header-Content-Length": str(len(header))}, v2=True),
    ]


def expected_response(case: Case) -> bytes:
    """A same-shaped response computed locally: the floor's answer when ovserve cannot give one.

    Only used if ovserve is not running (``--no-server``) or answers an error: the floor then
    returns this body, so its size is what ovserve *would* send for that request.
    """
    if case.model == "add":
        out = (case.inputs["a"] + case.inputs["b"]).astype(np.float32)
    else:
        x = case.inputs["x"]
        out = x.reshape(x.shape[0], POOL_GROUPS, -1).mean(axis=2, dtype=np.float32)
    if case.name == "small_col":
        return _dumps({"outputs": out.tolist()})
    if case.name in ("small_row", "large_row"):
        return _dumps({"predictions": out.tolist()})
    if case.name == "v2_json":
        return _dumps({"model_name": "add", "model_version": "1", "outputs": [
            {"name": "sum", "shape": list(out.shape), "datatype": "FP32",
             "data": out.ravel().tolist()}]})
    raw = bytes(out.astype("<f4").tobytes())
    header = _dumps({"model_name": "pool", "model_version": "1", "outputs": [
        {"name": "y", "shape": list(out.shape), "datatype": "FP32",
         "parameters": {"binary_data_size": len(raw)}}]})
    return header + raw
