"""mapping_config.json, shape / batch_size "auto", and the remaining OVMS/Triton wire differences,
against a real server process over real HTTP, with models built by OpenVINO's Python API.

One module-scoped server serves every model here; each test names the model it uses.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openvino as ov
import ovtest_models as models
import pytest
import requests
from openvino import opset13 as ops
from ovtest_server import ServerProcess, start_server, write_config
from PIL import Image

pytestmark = pytest.mark.timeout(240)

F32 = np.float32
A = np.arange(8, dtype=F32).reshape(2, 2, 2)
B = np.full((2, 2, 2), 10, F32)
HEADER = "Inference-Header-Content-Length"


def _matmul_model(base: Path) -> None:
    """``y = x @ W`` with x f32 [1,3], W [3,2]: only the batch dimension can change."""
    x = ops.parameter([1, 3], F32, name="x")
    y = ops.matmul(x, ops.constant(np.ones((3, 2), F32)), False, False)
    y.output(0).set_names({"y"})
    folder = base / "1"
    folder.mkdir(parents=True)
    ov.save_model(ov.Model([y], [x], "matmul"), str(folder / "model.xml"), compress_to_fp16=False)


def _mapping(version: Path, doc: object | str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (version / "mapping_config.json").write_text(text)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("mapauto")
    _mapping(models.add_model(root / "mapped"),
             {"inputs": {"a": "new_a"}, "outputs": {"sum": "total"}})
    _mapping(models.add_model(root / "badjson"), '{"inputs": {"a": "x"')
    _mapping(models.add_model(root / "halfmap"), {"inputs": {"a": "new_a"}, "outputs": ["sum"]})
    _mapping(models.add_model(root / "clash"), {"inputs": {"a": "b"}})
    _mapping(models.add_model(root / "mapshape"), {"inputs": {"a": "new_a"}})
    _mapping(models.add_model(root / "realname"), {"inputs": {"a": "new_a"}})
    models.add_model(root / "autobatch", shape=(1, 2, 2))
    models.identity_model(root / "autoshape", shape=(1, 3, 4, 4))
    models.identity_model(root / "autofixed", shape=(1, 3))
    _matmul_model(root / "matmul")
    models.identity_model(root / "single", shape=(-1, 4))
    models.identity_model(root / "fixed", shape=(1, 3))
    models.identity_model(root / "twodyn", shape=(3, -1, -1))
    models.identity_model(root / "static22", shape=(2, 2))
    models.string_model(root / "strings")
    models.add_model(root / "add")
    models.multi_output_model(root / "multi")
    models.image_model(root / "autoimage", height=4, width=6)
    entries = [
        {"name": "mapped", "base_path": "mapped"},
        {"name": "badjson", "base_path": "badjson"},
        {"name": "halfmap", "base_path": "halfmap"},
        {"name": "clash", "base_path": "clash"},
        {"name": "mapshape", "base_path": "mapshape", "shape": {"new_a": "(2,2,2)", "b": "(2,2,2)"}},
        {"name": "realname", "base_path": "realname", "shape": {"a": "(2,2,2)"}},
        {"name": "autobatch", "base_path": "autobatch", "batch_size": "auto"},
        {"name": "autoshape", "base_path": "autoshape", "shape": "auto"},
        {"name": "autofixed", "base_path": "autofixed", "shape": {"x": "auto"}},
        {"name": "matmul", "base_path": "matmul", "shape": "auto"},
        {"name": "single", "base_path": "single"},
        {"name": "fixed", "base_path": "fixed"},
        {"name": "twodyn", "base_path": "twodyn"},
        {"name": "static22", "base_path": "static22"},
        {"name": "strings", "base_path": "strings"},
        {"name": "add", "base_path": "add"},
        {"name": "multi", "base_path": "multi"},
        {"name": "autoimage", "base_path": "autoimage", "layout": "NHWC", "shape": "auto"},
    ]
    config = write_config(root / "config.json", entries)
    proc = start_server(["--config_path", str(config), "--file_system_poll_wait_seconds", "0"],
                        workdir=root)
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def get(http: requests.Session, server: ServerProcess, path: str) -> requests.Response:
    return http.get(server.url + path, timeout=30)


def post(http: requests.Session, server: ServerProcess, path: str, body: object,
         headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(server.url + path, data=data, headers=headers, timeout=60)


def v2_input(name: str, array: np.ndarray) -> dict[str, object]:
    return {"name": name, "shape": list(array.shape), "datatype": "FP32",
            "data": array.reshape(-1).tolist()}


def tfs_names(http: requests.Session, server: ServerProcess, model: str
              ) -> tuple[list[str], list[str]]:
    body = get(http, server, f"/v1/models/{model}/metadata").json()
    sig = body["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    return sorted(sig["inputs"]), sorted(sig["outputs"])


def v2_meta(http: requests.Session, server: ServerProcess, model: str) -> dict[str, object]:
    r = get(http, server, f"/v2/models/{model}")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


# ----------------------------------------------------------------- mapping_config.json


def test_mapping_renames_metadata(http: requests.Session, server: ServerProcess) -> None:
    assert tfs_names(http, server, "mapped") == (["b", "new_a"], ["total"])
    sig = get(http, server, "/v1/models/mapped/metadata").json()[
        "metadata"]["signature_def"]["signatureDef"]["serving_default"]
    assert sig["inputs"]["new_a"]["name"] == "new_a" and sig["outputs"]["total"]["name"] == "total"
    meta = v2_meta(http, server, "mapped")
    assert [i["name"] for i in meta["inputs"]] == ["new_a", "b"]  # type: ignore[attr-defined]
    assert [o["name"] for o in meta["outputs"]] == ["total"]  # type: ignore[attr-defined]


def test_mapping_in_tfs_predict(http: requests.Session, server: ServerProcess) -> None:
    column = post(http, server, "/v1/models/mapped:predict",
                  {"inputs": {"new_a": A.tolist(), "b": B.tolist()}})
    assert column.status_code == 200, column.text
    assert column.json() == {"outputs": (A + B).tolist()}
    row = post(http, server, "/v1/models/mapped:predict",
               {"instances": [{"new_a": A[0].tolist(), "b": B[0].tolist()}]})
    assert row.status_code == 200, row.text
    assert row.json() == {"predictions": [(A[0] + B[0]).tolist()]}
    old = post(http, server, "/v1/models/mapped:predict",
               {"inputs": {"a": A.tolist(), "b": B.tolist()}})
    assert old.status_code == 400
    assert old.json() == {"error": "Missing input with specific name - Required input: new_a"}


def test_mapping_in_kserve_infer(http: requests.Session, server: ServerProcess) -> None:
    body = {"inputs": [v2_input("new_a", A), v2_input("b", B)], "outputs": [{"name": "total"}]}
    r = post(http, server, "/v2/models/mapped/infer", body)
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert (out["name"], out["shape"], out["data"]) == ("total", [2, 2, 2],
                                                         (A + B).reshape(-1).tolist())
    own = post(http, server, "/v2/models/mapped/infer",
               {"inputs": [v2_input("new_a", A), v2_input("b", B)], "outputs": [{"name": "sum"}]})
    assert own.status_code == 400
    assert own.json() == {"error": "Missing output with specific name - Required output: sum"}


def test_mapping_in_mindspore_requests(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/model/mapped:predict",
             {"instances": [{"new_a": A[0].tolist(), "b": B[0].tolist()}]})
    assert r.status_code == 200
    assert r.json() == {"instances": [{"total": (A[0] + B[0]).tolist()}]}
    own = post(http, server, "/model/mapped:predict",
               {"instances": [{"a": A[0].tolist(), "b": B[0].tolist()}]})
    assert own.json() == {
        "error_msg": "Cannot find input new_a in instance input , servable mapped, method predict"}


def test_invalid_mapping_file_is_logged_and_ignored(http: requests.Session,
                                                    server: ServerProcess) -> None:
    assert tfs_names(http, server, "badjson") == (["a", "b"], ["sum"])
    r = post(http, server, "/v1/models/badjson:predict", {"inputs": {"a": A.tolist(), "b": B.tolist()}})
    assert r.status_code == 200, r.text
    assert "badjson/1/mapping_config.json is not a valid JSON file" in server.log()


def test_invalid_mapping_section_is_ignored_alone(http: requests.Session,
                                                  server: ServerProcess) -> None:
    assert tfs_names(http, server, "halfmap") == (["b", "new_a"], ["sum"])
    assert "Couldn't load outputs object from file" in server.log()


def test_mapping_that_would_merge_two_inputs_is_ignored(http: requests.Session,
                                                        server: ServerProcess) -> None:
    assert tfs_names(http, server, "clash") == (["a", "b"], ["sum"])
    assert "it gives two inputs the name b" in server.log()


def test_config_shape_uses_mapped_names(http: requests.Session, server: ServerProcess) -> None:
    meta = v2_meta(http, server, "mapshape")
    assert [(i["name"], i["shape"]) for i in meta["inputs"]] == [  # type: ignore[attr-defined]
        ("new_a", [2, 2, 2]), ("b", [2, 2, 2])]
    status = get(http, server, "/v1/models/realname").json()["model_version_status"][0]
    assert (status["state"], status["status"]["error_code"]) == ("LOADING", "UNKNOWN")
    assert status["status"]["error_message"] == (
        "Shape from config has real name. Use mapped name instead - a is mapped to new_a by "
        "mapping_config.json")


# ----------------------------------------------------------------- shape / batch_size "auto"


def test_batch_size_auto_reports_the_current_batch_and_follows_requests(
    http: requests.Session, server: ServerProcess
) -> None:
    def batch() -> tuple[int, str]:
        meta = v2_meta(http, server, "autobatch")
        tfs = get(http, server, "/v1/models/autobatch/metadata").json()
        dims = tfs["metadata"]["signature_def"]["signatureDef"]["serving_default"][
            "inputs"]["a"]["tensorShape"]["dim"]
        return meta["inputs"][0]["shape"][0], dims[0]["size"]  # type: ignore[index]

    assert batch() == (1, "1")
    a4, b4 = np.arange(16, dtype=F32).reshape(4, 2, 2), np.ones((4, 2, 2), F32)
    r = post(http, server, "/v1/models/autobatch:predict", {"inputs": {"a": a4.tolist(), "b": b4.tolist()}})
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": (a4 + b4).tolist()}
    assert batch() == (4, "4")
    one = post(http, server, "/v2/models/autobatch/infer",
               {"inputs": [v2_input("a", a4[:1]), v2_input("b", b4[:1])]})
    assert one.status_code == 200, one.text
    assert one.json()["outputs"][0]["data"] == (a4[:1] + b4[:1]).reshape(-1).tolist()
    assert batch() == (1, "1")
    # only the batch is automatic: another inner shape is still refused
    bad = post(http, server, "/v1/models/autobatch:predict",
               {"inputs": {"a": [[[1, 2, 3]]], "b": [[[1, 2, 3]]]}})
    assert bad.status_code == 400
    assert bad.json() == {"error": "Invalid input shape - Expected: (-1,2,2); Actual: (1,1,3); "
                                   "input name: a"}


def test_shape_auto_reshapes_to_the_request(http: requests.Session, server: ServerProcess) -> None:
    assert v2_meta(http, server, "autoshape")["inputs"][0]["shape"] == [1, 3, 4, 4]  # type: ignore[index]
    x = np.random.default_rng(1).random((2, 3, 5, 7)).astype(F32)
    r = post(http, server, "/v2/models/autoshape/infer", {"inputs": [v2_input("x", x)]})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["shape"] == [2, 3, 5, 7]
    np.testing.assert_array_equal(np.array(out["data"], F32), x.reshape(-1))
    assert v2_meta(http, server, "autoshape")["inputs"][0]["shape"] == [2, 3, 5, 7]  # type: ignore[index]
    # the rank is still checked
    r3 = post(http, server, "/v1/models/autoshape:predict", {"inputs": {"x": [[1.0, 2.0]]}})
    assert r3.status_code == 400
    assert r3.json()["error"].startswith("Invalid number of shape dimensions")


def test_shape_auto_per_input(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/autofixed:predict", {"inputs": {"x": [[1, 2, 3, 4, 5]] * 2}})
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": [[1.0, 2.0, 3.0, 4.0, 5.0]] * 2}


def test_a_shape_the_model_cannot_take_is_a_client_error(http: requests.Session,
                                                         server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/matmul:predict", {"inputs": {"x": [[1.0, 2.0, 3.0, 4.0]]}})
    assert r.status_code == 400
    assert r.json()["error"].startswith("Model could not be reshaped with requested shape - ")
    ok = post(http, server, "/v1/models/matmul:predict", {"inputs": {"x": [[1.0, 2.0, 3.0]] * 3}})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"outputs": [[6.0, 6.0]] * 3}


def test_concurrent_requests_of_several_shapes_all_get_their_answer(
    server: ServerProcess,
) -> None:
    rng = np.random.default_rng(7)
    shapes = [(1, 3, 4, 4), (2, 3, 6, 6), (1, 3, 8, 5)]
    jobs = [rng.random(shapes[i % 3]).astype(F32) for i in range(24)]

    def one(x: np.ndarray) -> tuple[int, list[int], np.ndarray]:
        with requests.Session() as session:
            r = session.post(f"{server.url}/v2/models/autoshape/infer",
                             json={"inputs": [v2_input("x", x)]}, timeout=120)
        if r.status_code != 200:
            return r.status_code, [], np.zeros(0)
        out = r.json()["outputs"][0]
        return 200, out["shape"], np.array(out["data"], F32)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, jobs))
    for x, (status, shape, data) in zip(jobs, results, strict=True):
        assert status == 200
        assert shape == list(x.shape)
        np.testing.assert_array_equal(data, x.reshape(-1))
    assert "Reshaping autoshape version 1" in server.log()


def test_shape_auto_takes_images_at_their_own_resolution(http: requests.Session,
                                                         server: ServerProcess) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (12, 8), (10, 20, 30)).save(buf, format="PNG")
    img = base64.b64encode(buf.getvalue()).decode()
    r = post(http, server, "/v1/models/autoimage:predict", {"instances": [{"image": {"b64": img}}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [[30.0, 20.0, 10.0]]}  # BGR, as OVMS decodes
    meta = v2_meta(http, server, "autoimage")
    assert meta["inputs"][0]["shape"] == [1, 8, 12, 3]  # type: ignore[index]


# ----------------------------------------------------------------- wire differences


def test_raw_binary_request(http: requests.Session, server: ServerProcess) -> None:
    x = np.arange(8, dtype=F32)
    r = post(http, server, "/v2/models/single/infer", x.tobytes(), {HEADER: "0"})
    assert r.status_code == 200, r.text
    size = int(r.headers[HEADER])
    doc = json.loads(r.content[:size])
    (out,) = doc["outputs"]
    assert (out["name"], out["shape"], out["datatype"]) == ("y", [2, 4], "FP32")
    assert out["parameters"] == {"binary_data_size": 32}
    assert r.content[size:] == x.tobytes()
    fixed = post(http, server, "/v2/models/fixed/infer", np.ones(3, F32).tobytes(), {HEADER: "0"})
    assert fixed.status_code == 200, fixed.text
    text = post(http, server, "/v2/models/strings/infer", "héllo".encode(), {HEADER: "0"})
    assert text.status_code == 200, text.text
    size = int(text.headers[HEADER])
    assert json.loads(text.content[:size])["outputs"][0]["shape"] == [1]
    assert text.content[size:] == struct.pack("<I", 6) + "héllo".encode()


@pytest.mark.parametrize(
    ("model", "body", "error"),
    [
        ("add", np.ones(8, F32).tobytes(),
         "Raw request must only have 1 input (found 1) to be deduced but got 2 inputs in 'add' "
         "model configuration"),
        ("twodyn", np.ones(12, F32).tobytes(),
         "The shape of the raw input 'x' can not be deduced because there are more than one "
         "variable-sized dimension"),
        ("fixed", np.ones(2, F32).tobytes(),
         "Invalid content size of tensor proto - Expected: 12 bytes; Actual: 8 bytes; input "
         "name: x"),
        ("single", np.ones(3, F32).tobytes(),
         "Invalid content size of tensor proto - Expected: a multiple of 16 bytes; Actual: 12 "
         "bytes; input name: x"),
    ],
)
def test_raw_binary_request_errors(http: requests.Session, server: ServerProcess, model: str,
                                   body: bytes, error: str) -> None:
    r = post(http, server, f"/v2/models/{model}/infer", body, {HEADER: "0"})
    assert r.status_code == 400
    assert r.json() == {"error": error}


def test_two_requested_outputs_with_one_name(http: requests.Session,
                                             server: ServerProcess) -> None:
    body = {"inputs": [v2_input("x", np.ones((1, 4), F32))],
            "outputs": [{"name": "double"}, {"name": "double"}]}
    r = post(http, server, "/v2/models/multi/infer", body)
    assert r.status_code == 400
    assert r.json() == {"error": "Cannot insert more than one tensor with the same name - "
                                 "requested output: double"}


def test_kserve_metadata_lists_only_available_versions(http: requests.Session,
                                                       server: ServerProcess) -> None:
    assert v2_meta(http, server, "add")["versions"] == ["1"]
    # realname's only version failed to load: it has no metadata to give
    assert get(http, server, "/v2/models/realname").status_code == 404


def test_mindspore_url_without_model_keyword(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/x/:add_common", {"instances": [{"a": 1}]})
    assert r.status_code == 200
    assert r.json() == {"error_msg": "please check url, the keyword:[model] must contain."}
    other = http.get(server.url + "/x/:add_common", timeout=10)
    assert other.status_code == 400
    assert other.json() == {"error": "Invalid request URL"}
    assert post(http, server, "/v1/x/:add_common", {}).json() == {"error": "Invalid request URL"}


def test_mindspore_whole_instance_on_a_static_model_without_batch(
    http: requests.Session, server: ServerProcess
) -> None:
    whole = [[1.0, 2.0], [3.0, 4.0]]
    r = post(http, server, "/model/static22:predict", {"instances": [{"x": whole}, {"x": [5.0, 6.0]}]})
    assert r.status_code == 200
    assert r.json() == {"instances": [{"y": whole}, {"y": [5.0, 6.0]}]}
