"""MindSpore-Serving-style REST over real HTTP against a real server and real OpenVINO models.

Every answer of this dialect is HTTP 200 with a JSON body; failures are ``{"error_msg": ...}``.
Models come from the shared ``server`` fixture (conftest.py), started with ``--metrics_enable``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import requests
from openvino import opset13 as ops
from ovtest_server import ServerProcess, start_server, write_config

pytestmark = pytest.mark.timeout(180)

A = np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32)
B = np.array([[10.0, 20.25], [30.0, 40.0]], dtype=np.float32)


def post(
    http: requests.Session, server: ServerProcess, path: str, body: object
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = http.post(server.url + path, data=data, timeout=30)
    assert r.status_code == 200, r.text  # this dialect answers everything with 200
    assert r.headers["Content-Type"] == "application/json"
    return r


def predict(http: requests.Session, server: ServerProcess, model: str, body: object) -> object:
    return post(http, server, f"/model/{model}:predict", body).json()


def typed(array: np.ndarray, type_name: str) -> dict[str, object]:
    return {
        "b64": base64.b64encode(array.tobytes()).decode(),
        "type": type_name,
        "shape": list(array.shape),
    }


def as_array(value: object, dtype: type) -> np.ndarray:
    return np.array(value, dtype=dtype)


# ----------------------------------------------------------------- predict: success


def test_single_instance_object(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/model/add:predict", {"instances": {"a": A.tolist(), "b": B.tolist()}})
    body = r.json()
    assert list(body) == ["instances"]
    assert len(body["instances"]) == 1
    assert list(body["instances"][0]) == ["sum"]
    assert np.array_equal(as_array(body["instances"][0]["sum"], np.float32), A + B)
    assert r.content == b'{"instances":[{"sum":[[11.5,22.25],[33.0,44.0]]}]}'


def test_list_of_instances_is_batched_and_split(http: requests.Session, server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((5, 2, 2)).astype(np.float32)
    b = rng.standard_normal((5, 2, 2)).astype(np.float32)
    before = _inference_count(http, server, "add")
    body = predict(http, server, "add", {"instances": [{"a": x.tolist(), "b": y.tolist()}
                                                       for x, y in zip(a, b, strict=True)]})
    assert isinstance(body, dict)
    results = body["instances"]
    assert len(results) == 5
    for k, result in enumerate(results):
        assert list(result) == ["sum"]
        got = as_array(result["sum"], np.float32)
        assert got.shape == (2, 2)
        assert np.array_equal(got, a[k] + b[k]), k
    # The five instances ran as one inference of batch 5, then were split again.
    assert _inference_count(http, server, "add") == before + 1


def test_instance_with_leading_batch_of_one(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "add", {"instances": [{"a": [A.tolist()], "b": [B.tolist()]}]})
    assert isinstance(body, dict)
    assert np.array_equal(as_array(body["instances"][0]["sum"], np.float32), A + B)


@pytest.mark.parametrize(
    ("path", "offset"),
    [
        ("/model/versioned/version/1:predict", 100.0),
        ("/model/versioned/version/2:predict", 200.0),
        ("/model/versioned/version/0:predict", 200.0),  # 0: the latest
        ("/model/versioned:predict", 200.0),
        ("/version/1/model/versioned:predict", 100.0),  # MindSpore: keys in any order
    ],
)
def test_version_in_url(
    http: requests.Session, server: ServerProcess, path: str, offset: float
) -> None:
    body = post(http, server, path, {"instances": {"a": A.tolist(), "b": B.tolist()}}).json()
    assert np.array_equal(as_array(body["instances"][0]["sum"], np.float32), A + B + offset)


def test_typed_b64_fp32(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "add", {"instances": [
        {"a": typed(A, "fp32"), "b": B.tolist()},
        {"a": typed(B, "float32"), "b": typed(A.reshape(1, 2, 2), "fp32")},
    ]})
    assert isinstance(body, dict)
    first, second = (as_array(i["sum"], np.float32) for i in body["instances"])
    assert np.array_equal(first, A + B)
    assert np.array_equal(second, A + B)


def test_typed_b64_int32_and_nested_ints(http: requests.Session, server: ServerProcess) -> None:
    x = np.array([7, -2, 2**30], dtype=np.int32)
    body = predict(http, server, "int32", {"instances": [
        {"x": typed(x, "int32")},
        {"x": [4, 5, 6]},
    ]})
    assert body == {"instances": [{"y": [21, -6, 3 * 2**30 - 2**32]}, {"y": [12, 15, 18]}]}
    assert isinstance(body["instances"][0]["y"][0], int)


def _scaled_model(base: Path) -> None:
    """``y = x * k``: x f32 [-1,2], k f32 [-1] (a scalar per instance)."""
    x = ops.parameter([-1, 2], np.float32, name="x")
    k = ops.parameter([-1], np.float32, name="k")
    y = ops.multiply(x, ops.unsqueeze(k, ops.constant(np.array([1], dtype=np.int64))))
    y.output(0).set_names({"y"})
    folder = base / "1"
    folder.mkdir(parents=True)
    ov.save_model(ov.Model([y], [x, k], "scaled"), str(folder / "model.xml"), compress_to_fp16=False)


@pytest.fixture(scope="module")
def scalar_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("msrepo")
    _scaled_model(root / "scaled")
    config = write_config(root / "config.json", [{"name": "scaled", "base_path": "scaled"}])
    proc = start_server(["--config_path", str(config), "--file_system_poll_wait_seconds", "0"],
                        workdir=root)
    yield proc
    assert proc.stop() == 0, proc.log()


def test_scalar_values(http: requests.Session, scalar_server: ServerProcess) -> None:
    body = predict(http, scalar_server, "scaled", {"instances": [
        {"x": [1.5, -2.0], "k": 3.0},
        {"x": [4.0, 0.25], "k": 0.5},
        {"x": typed(np.array([2.0, 8.0], dtype=np.float32), "fp32"),
         "k": typed(np.array(-1.0, dtype=np.float32), "fp32")},
        {"x": [1.0, 1.0], "k": 2},  # a JSON int is int32
    ]})
    assert body == {"instances": [
        {"y": [4.5, -6.0]},
        {"y": [2.0, 0.125]},
        {"y": [-2.0, -8.0]},
        {"error_msg": "Given model input 1 data type kMSI_Int32 not match the data type "
                      "kMSI_Float32 defined in model"},
    ]}


def test_scalar_where_a_tensor_is_expected(http: requests.Session, server: ServerProcess) -> None:
    # A scalar is an instance value of shape []; the add model wants [2,2] per instance.
    body = predict(http, server, "add", {"instances": {"a": 1.0, "b": 2.0}})
    assert body == {"error_msg": "Given model input 0 size 4 not match the size 16 defined in model"}


def test_scalar_output(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "multi", {"instances": {"x": [0.25, 0.5, 1.0, 2.0]}})
    assert body == {"instances": [{"double": [0.5, 1.0, 2.0, 4.0], "total": 3.75}]}


def test_nested_lists_on_fixed_batch_model(http: requests.Session, server: ServerProcess) -> None:
    """``fixed`` is [1,3]: each instance runs alone, with or without its leading 1."""
    body = predict(http, server, "fixed", {"instances": [{"x": [1.0, 2.0, 3.0]},
                                                         {"x": [[4.0, 5.5, -6.0]]}]})
    assert body == {"instances": [{"y": [1.0, 2.0, 3.0]}, {"y": [4.0, 5.5, -6.0]}]}


def test_fp16_model(http: requests.Session, server: ServerProcess) -> None:
    x = np.array([0.5, 1.5, -2.0], dtype=np.float16)
    body = predict(http, server, "fp16", {"instances": [{"x": typed(x, "fp16")},
                                                        {"x": typed(x * 2, "float16")}]})
    assert isinstance(body, dict)
    first, second = (as_array(i["y"], np.float16) for i in body["instances"])
    assert np.array_equal(first, x * 2)
    assert np.array_equal(second, x * 4)
    assert isinstance(body["instances"][0]["y"][0], float)
    # A JSON float is float32 (4 bytes), as in MindSpore: the size check refuses it.
    body = predict(http, server, "fp16", {"instances": {"x": [0.5, 1.5, -2.0]}})
    assert body == {"error_msg": "Given model input 0 size 12 not match the size 6 defined in model"}


def test_multi_output_keys_sorted(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/model/multi:predict",
             {"instances": [{"x": [1.0, 2.0, 3.0, 4.0]}, {"x": [0.5, 0.0, 0.0, 0.0]}]})
    assert r.json() == {"instances": [{"double": [2.0, 4.0, 6.0, 8.0], "total": 10.0},
                                      {"double": [1.0, 0.0, 0.0, 0.0], "total": 0.5}]}
    assert r.text.index('"double"') < r.text.index('"total"')


def test_image_model_instance(http: requests.Session, server: ServerProcess) -> None:
    image = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    body = predict(http, server, "image", {"instances": {"image": image.tolist()}})
    assert isinstance(body, dict)
    assert np.allclose(as_array(body["instances"][0]["mean"], np.float32), image.mean(axis=(0, 1)))


# ----------------------------------------------------------------- per-instance and top-level errors


def test_mix_of_good_and_bad_instances(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "int32", {"instances": [
        {"x": [1, 2, 3]},
        {"x": [1.5, 2.5, 3.5]},
        {"x": [1, 2]},
        {"x": typed(np.array([10, 20, 30], dtype=np.int32), "int32")},
    ]})
    assert body == {"instances": [
        {"y": [3, 6, 9]},
        {"error_msg": "Given model input 0 data type kMSI_Float32 not match the data type "
                      "kMSI_Int32 defined in model"},
        {"error_msg": "Given model input 0 size 8 not match the size 12 defined in model"},
        {"y": [30, 60, 90]},
    ]}


def test_all_bad_with_one_error_is_top_level(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "int32", {"instances": [{"x": [1.5, 2.5, 3.5]},
                                                         {"x": [0.5, 0.5, 0.5]}]})
    assert body == {"error_msg": "Given model input 0 data type kMSI_Float32 not match the data "
                                 "type kMSI_Int32 defined in model"}


def test_all_bad_with_different_errors_stay_per_instance(
    http: requests.Session, server: ServerProcess
) -> None:
    body = predict(http, server, "add", {"instances": [
        {"a": [[1.0, 2.0]], "b": B.tolist()},
        {"a": [[1, 2], [3, 4]], "b": B.tolist()},
    ]})
    assert body == {"instances": [
        {"error_msg": "Given model input 0 size 8 not match the size 16 defined in model"},
        {"error_msg": "Given model input 0 data type kMSI_Int32 not match the data type "
                      "kMSI_Float32 defined in model"},
    ]}


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ({"a": A.tolist()}, "Cannot find input b in instance input , servable add, method predict"),
        ({"a": A.tolist(), "c": B.tolist()},
         "Cannot find input b in instance input , servable add, method predict"),
        # A missing input fails the whole request, even when other instances are good.
        ([{"a": A.tolist(), "b": B.tolist()}, {"b": B.tolist()}],
         "Cannot find input a in instance input , servable add, method predict"),
    ],
    ids=["missing", "wrong-name", "one-of-two"],
)
def test_missing_input_name(
    http: requests.Session, server: ServerProcess, instances: object, message: str
) -> None:
    assert predict(http, server, "add", {"instances": instances}) == {"error_msg": message}


# ----------------------------------------------------------------- URL, method and body errors


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/model/nope:predict", "Request servable(nope) method(predict) , servable is not available"),
        ("/model/add/version/7:predict",
         "Request servable(add) method(predict)  version(7) , servable is not available"),
        ("/model/versioned/version/3:predict",
         "Request servable(versioned) method(predict)  version(3) , servable is not available"),
        ("/model/add:classify", "Request servable(add) method(classify) , method is not available"),
        ("/model/add/version/1:add_common",
         "Request servable(add) method(add_common)  version(1) , method is not available"),
        ("/model/add", "please check url, the keyword:[service method] must contain."),
        ("/model/add:", "please check url, the keyword:[service method] must contain."),
        ("/model/add/version/x:predict",
         "please check url, the keyword:[version] value invalid, request version number x"),
        ("/model/add/version/4294967296:predict",
         "please check url, version number range failed, request version number 4294967296"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_url_errors(http: requests.Session, server: ServerProcess, path: str, message: str) -> None:
    body = post(http, server, path, {"instances": {"a": A.tolist(), "b": B.tolist()}}).json()
    assert body == {"error_msg": message}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_only_post(http: requests.Session, server: ServerProcess, method: str) -> None:
    r = http.request(method, f"{server.url}/model/add:predict", timeout=10)
    assert r.status_code == 200
    assert r.json() == {"error_msg": "http message only support POST right now"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{bad json",
         "Illegal JSON format.[json.exception.parse_error.101] parse error at line 1, column 2: "
         "syntax error while parsing value - invalid literal; last read: 'b'"),
        (b"", "http message invalid"),
        (b"[1]", "Parser request failed, key 'instances' expects to exist once, but actually 0 times"),
        (b'{"inputs": {}}',
         "Parser request failed, key 'instances' expects to exist once, but actually 0 times"),
        (b'{"instances": []}', "Parser request failed, instances value is array type, but no value"),
        (b'{"instances": {}}', "Parser request failed, json object, value is empty"),
        (b'{"instances": [1, 2]}', "Parser request failed, instances no key mode is not supported"),
        (b'{"instances": [{"a": 1}, 2]}',
         "Parser request failed, json array, instance is not object type"),
        (b'{"instances": [{}]}',
         "Parser request failed, json array, instance is object type, but no value"),
        (b'{"instances": {"a": null, "b": 1}}',
         "Parser request failed, json value is null, it is not supported"),
        (b'{"instances": {"a": [[1, 2], [3]], "b": 1}}',
         "Parser request failed, invalid json array: json size is 1, the dim 1 expected to be 2"),
        (b'{"instances": {"a": [1, 2.5], "b": 1}}',
         "Parser request failed, json array, elements type is not equal"),
        (b'{"instances": {"a": {"b64": "AAAA", "type": "complex"}, "b": 1}}',
         "Parser request failed, json object, specified type:'complex' is illegal"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_body_errors(http: requests.Session, server: ServerProcess, body: bytes, message: str) -> None:
    assert predict(http, server, "add", body) == {"error_msg": message}


def test_invalid_json_position(http: requests.Session, server: ServerProcess) -> None:
    body = predict(http, server, "add", b'{"instances":\n  {"a": tru}}')
    assert isinstance(body, dict)
    text = body["error_msg"]
    assert text.startswith("Illegal JSON format.[json.exception.parse_error.101] parse error at "
                           "line 2, column ")
    assert "syntax error while parsing value - invalid literal" in text


def test_other_dialects_are_untouched(http: requests.Session, server: ServerProcess) -> None:
    """``/models/...`` is not this dialect; an unknown URL keeps OVMS's 400."""
    r = http.post(f"{server.url}/models/add:predict", data=b"{}", timeout=10)
    assert r.status_code == 400
    assert r.json() == {"error": "Invalid request URL"}


# ----------------------------------------------------------------- metrics


def _metrics(http: requests.Session, server: ServerProcess) -> str:
    r = http.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


def _sample(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _inference_count(http: requests.Session, server: ServerProcess, model: str) -> float:
    return _sample(_metrics(http, server), "ovms_inference_time_us_count",
                   f'name="{model}",version="1"')


def test_metrics_count_mindspore_requests(http: requests.Session, server: ServerProcess) -> None:
    labels = 'api="MindSpore",interface="REST",method="Predict",name="multi",version="1"'
    before = _metrics(http, server)
    ok0 = _sample(before, "ovms_requests_success", labels)
    fail0 = _sample(before, "ovms_requests_fail", labels)
    predict(http, server, "multi", {"instances": {"x": [1.0, 2.0, 3.0, 4.0]}})
    predict(http, server, "multi", {"instances": {"x": [1, 2, 3, 4]}})  # int32: type error
    after = _metrics(http, server)
    assert _sample(after, "ovms_requests_success", labels) == ok0 + 1
    assert _sample(after, "ovms_requests_fail", labels) == fail0 + 1
