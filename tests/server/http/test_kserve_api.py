"""KServe v2 REST over real HTTP against a real server and real OpenVINO models.

Covers health, server and model metadata, model readiness, JSON inference (flat and nested
``data``, ``id``, requested ``outputs``, versions), OVMS's error texts and codes, and the binary
tensor extension (``Inference-Header-Content-Length``, ``binary_data_size``, ``binary_data``,
``binary_data_output``, FP16, BYTES with 4-byte little-endian length prefixes).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import requests
from ovtest_server import ServerProcess

from ovserve.server import __version__

pytestmark = pytest.mark.timeout(180)

HEADER = "Inference-Header-Content-Length"


# ----------------------------------------------------------------------------- helpers


def infer(http: requests.Session, server: ServerProcess, model: str, body: object,
          headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(f"{server.url}/v2/models/{model}/infer", data=data, headers=headers,
                     timeout=60)


def tensor(name: str, array: np.ndarray, datatype: str, nested: bool = False) -> dict[str, Any]:
    data = array.tolist() if nested else array.reshape(-1).tolist()
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}


def binary_request(doc: dict[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """JSON header + raw blobs, and the header saying where the JSON ends."""
    head = json.dumps(doc).encode()
    return head + b"".join(blobs), {HEADER: str(len(head)),
                                    "Content-Type": "application/octet-stream"}


def binary_input(name: str, array: np.ndarray, datatype: str) -> tuple[dict[str, Any], bytes]:
    raw = np.ascontiguousarray(array).tobytes()
    entry = {"name": name, "shape": list(array.shape), "datatype": datatype,
             "parameters": {"binary_data_size": len(raw)}}
    return entry, raw


def split_response(r: requests.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON part and each binary output's bytes, by output name."""
    assert r.status_code == 200, r.text
    length = int(r.headers[HEADER])
    assert r.headers["Content-Type"] == "application/octet-stream"
    doc = json.loads(r.content[:length])
    blobs: dict[str, bytes] = {}
    offset = length
    for out in doc["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if size is not None:
            assert "data" not in out
            blobs[out["name"]] = r.content[offset : offset + size]
            offset += size
    assert offset == len(r.content)
    return doc, blobs


def pack_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def unpack_bytes(raw: bytes) -> list[bytes]:
    items, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        items.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    assert offset == len(raw)
    return items


A = np.array([[[1.0, 2.0], [3.0, 4.0]]], dtype=np.float32)
B = np.array([[[0.5, 0.25], [0.125, 0.1]]], dtype=np.float32)


def add_body(a: np.ndarray = A, b: np.ndarray = B, **extra: object) -> dict[str, Any]:
    return {"inputs": [tensor("a", a, "FP32"), tensor("b", b, "FP32")], **extra}


def outputs_of(r: requests.Response) -> dict[str, dict[str, Any]]:
    assert r.status_code == 200, r.text
    return {out["name"]: out for out in r.json()["outputs"]}


# ----------------------------------------------------------------- health and metadata


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_is_200_with_empty_body(
    http: requests.Session, server: ServerProcess, path: str
) -> None:
    r = http.get(server.url + path, timeout=10)
    assert r.status_code == 200
    assert r.content == b""


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata(http: requests.Session, server: ServerProcess, path: str) -> None:
    r = http.get(server.url + path, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"name": "ovserve", "version": __version__,
                        "extensions": ["binary_tensor_data"]}


def test_model_metadata_is_byte_exact(http: requests.Session, server: ServerProcess) -> None:
    r = http.get(f"{server.url}/v2/models/add", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.text == (
        '{"name":"add","versions":["1"],"platform":"OpenVINO",'
        '"inputs":[{"name":"a","datatype":"FP32","shape":[-1,2,2]},'
        '{"name":"b","datatype":"FP32","shape":[-1,2,2]}],'
        '"outputs":[{"name":"sum","datatype":"FP32","shape":[-1,2,2]}]}'
    )


@pytest.mark.parametrize(
    ("path", "versions", "inputs", "outputs"),
    [
        ("int32", ["1"], [("x", "INT32", [-1, 3])], [("y", "INT32", [-1, 3])]),
        ("fp16", ["1"], [("x", "FP16", [-1, 3])], [("y", "FP16", [-1, 3])]),
        ("fixed", ["1"], [("x", "FP32", [1, 3])], [("y", "FP32", [1, 3])]),
        ("multi", ["1"], [("x", "FP32", [-1, 4])],
         [("double", "FP32", [-1, 4]), ("total", "FP32", [-1])]),
        ("image", ["1"], [("image", "FP32", [-1, 4, 6, 3])], [("mean", "FP32", [-1, 3])]),
        ("strings", ["1"], [("text", "BYTES", [-1])], [("echo", "BYTES", [-1])]),
        # every AVAILABLE version, with or without /versions/N in the URL
        ("versioned", ["1", "2"], [("a", "FP32", [-1, 2, 2]), ("b", "FP32", [-1, 2, 2])],
         [("sum", "FP32", [-1, 2, 2])]),
        ("versioned/versions/1", ["1", "2"], [("a", "FP32", [-1, 2, 2]), ("b", "FP32", [-1, 2, 2])],
         [("sum", "FP32", [-1, 2, 2])]),
        ("versioned/versions/0", ["1", "2"], [("a", "FP32", [-1, 2, 2]), ("b", "FP32", [-1, 2, 2])],
         [("sum", "FP32", [-1, 2, 2])]),
    ],
)
def test_model_metadata(
    http: requests.Session, server: ServerProcess, path: str, versions: list[str],
    inputs: list[tuple[str, str, list[int]]], outputs: list[tuple[str, str, list[int]]],
) -> None:
    body = http.get(f"{server.url}/v2/models/{path}", timeout=10).json()
    assert body == {
        "name": path.split("/")[0],
        "versions": versions,
        "platform": "OpenVINO",
        "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in inputs],
        "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in outputs],
    }


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("add/ready", 200, None),
        ("add/versions/1/ready", 200, None),
        ("versioned/ready", 200, None),
        ("versioned/versions/1/ready", 200, None),
        ("versioned/versions/2/ready", 200, None),
        ("nope/ready", 404, "Model with requested name is not found"),
        ("add/versions/7/ready", 404, "Model with requested version is not found"),
        ("versioned/versions/3/ready", 404, "Model with requested version is not found"),
        ("nope", 404, "Model with requested name is not found"),
        ("add/versions/7", 404, "Model with requested version is not found"),
        ("add/versions/99999999999999999999", 404, "Model with requested version is not found"),
        ("a..b", 400, "The provided base path is invalid or doesn't exists"),
    ],
)
def test_model_ready_and_metadata_errors(
    http: requests.Session, server: ServerProcess, path: str, status: int, error: str | None
) -> None:
    r = http.get(f"{server.url}/v2/models/{path}", timeout=10)
    assert r.status_code == status
    if error is None:
        assert r.content == b""
    else:
        assert r.headers["Content-Type"] == "application/json"
        assert r.json() == {"error": error}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v2/models/add/infer", 406, "Unsupported method"),
        ("PUT", "/v2/models/add/infer", 406, "Unsupported method"),
        ("POST", "/v2/models/add/ready", 406, "Unsupported method"),
        ("POST", "/v2/models/add", 406, "Unsupported method"),
        ("DELETE", "/v2", 406, "Unsupported method"),
        ("POST", "/v2/health/live", 406, "Unsupported method"),
        ("GET", "/v2/models/add/versions/x", 400, "Invalid request URL"),
        ("GET", "/v2/models/add/explain", 400, "Invalid request URL"),
        ("GET", "/v2/health", 400, "Invalid request URL"),
    ],
)
def test_url_and_method_errors(
    http: requests.Session, server: ServerProcess, method: str, path: str, status: int, error: str
) -> None:
    r = http.request(method, server.url + path, data=b"{}" if method != "GET" else None,
                     timeout=10)
    assert (r.status_code, r.json()) == (status, {"error": error})


# ------------------------------------------------------------------------ JSON infer


def test_infer_json_is_byte_exact(http: requests.Session, server: ServerProcess) -> None:
    r = infer(http, server, "add", add_body(id="r-1"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert HEADER not in r.headers
    # float32 values print as their shortest round-tripping text (0.1f + 4 -> 4.1)
    assert r.text == (
        '{"model_name":"add","id":"r-1","model_version":"1","outputs":'
        '[{"name":"sum","shape":[1,2,2],"datatype":"FP32","data":[1.5,2.25,3.125,4.1]}]}'
    )


def test_infer_large_json_body(http: requests.Session, server: ServerProcess) -> None:
    # Over 64 KiB the "data" arrays are read by the C scanner (codecs/numjson.py).
    rng = np.random.default_rng(8)
    a = rng.random((4000, 2, 2), dtype=np.float32)
    b = rng.random((4000, 2, 2), dtype=np.float32)
    r = infer(http, server, "add", {"id": "big", "inputs": [tensor("a", a, "FP32"),
                                                           tensor("b", b, "FP32", nested=True)]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == "big" and out["outputs"][0]["shape"] == [4000, 2, 2]
    assert np.array_equal(np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(4000, 2, 2), a + b)
    short = {"inputs": [tensor("a", a, "FP32"), {**tensor("b", b, "FP32"), "shape": [4001, 2, 2]}]}
    r = infer(http, server, "add", short)
    assert r.status_code == 400
    assert r.json()["error"] == ("Invalid number of values in tensor proto container - Expected: 16004 "
                                 "values; Actual: 16000 values; input name: b")


def test_infer_flat_and_nested_data_agree(http: requests.Session, server: ServerProcess) -> None:
    rng = np.random.default_rng(7)
    a = rng.standard_normal((3, 2, 2)).astype(np.float32)
    b = rng.standard_normal((3, 2, 2)).astype(np.float32)
    expected = a + b
    flat = infer(http, server, "add", add_body(a, b))
    nested = infer(http, server, "add", {
        "inputs": [tensor("a", a, "FP32", nested=True), tensor("b", b, "FP32", nested=True)]})
    for r in (flat, nested):
        out = outputs_of(r)["sum"]
        assert (out["shape"], out["datatype"]) == ([3, 2, 2], "FP32")
        got = np.array(out["data"], dtype=np.float32).reshape(out["shape"])
        np.testing.assert_array_equal(got, expected)
    assert flat.content == nested.content


def test_infer_input_order_does_not_matter(http: requests.Session, server: ServerProcess) -> None:
    body = add_body()
    body["inputs"].reverse()
    out = outputs_of(infer(http, server, "add", body))["sum"]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32), (A + B).reshape(-1))


def test_infer_without_id_has_no_id(http: requests.Session, server: ServerProcess) -> None:
    doc = infer(http, server, "add", add_body()).json()
    assert "id" not in doc
    assert doc["model_name"] == "add"
    assert doc["model_version"] == "1"


def test_infer_echoes_id(http: requests.Session, server: ServerProcess) -> None:
    assert infer(http, server, "add", add_body(id="abc-ü 1")).json()["id"] == "abc-ü 1"


@pytest.mark.parametrize(
    ("requested", "names"),
    [
        (None, ["double", "total"]),
        (["total"], ["total"]),
        (["double"], ["double"]),
        (["total", "double"], ["total", "double"]),
    ],
)
def test_requested_outputs_are_honoured(
    http: requests.Session, server: ServerProcess, requested: list[str] | None, names: list[str]
) -> None:
    x = np.array([[1, 2, 3, 4], [-1, 0.5, 0, 8]], dtype=np.float32)
    body: dict[str, Any] = {"inputs": [tensor("x", x, "FP32")]}
    if requested is not None:
        body["outputs"] = [{"name": n} for n in requested]
    doc = infer(http, server, "multi", body).json()
    assert [out["name"] for out in doc["outputs"]] == names
    expected = {"double": x * 2, "total": x.sum(axis=1)}
    for out in doc["outputs"]:
        want = expected[out["name"]]
        assert out["shape"] == list(want.shape)
        np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32), want.reshape(-1))


def test_int32_model(http: requests.Session, server: ServerProcess) -> None:
    x = np.array([[1, -2, 715827882], [0, -715827882, 7]], dtype=np.int32)
    out = outputs_of(infer(http, server, "int32", {"inputs": [tensor("x", x, "INT32")]}))["y"]
    assert (out["datatype"], out["shape"]) == ("INT32", [2, 3])
    assert out["data"] == (x * np.int32(3)).reshape(-1).tolist()


def test_fp16_model_refuses_json_data(http: requests.Session, server: ServerProcess) -> None:
    r = infer(http, server, "fp16", {"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP16", "data": [1, 2, 3]}]})
    assert (r.status_code, r.json()) == (
        400, {"error": "Could not parse input content. Unsupported data precision detected"})


def test_versions_are_routed(http: requests.Session, server: ServerProcess) -> None:
    expected = (A + B).reshape(-1)
    results = {}
    for path, version in (("versioned/versions/1", "1"), ("versioned/versions/2", "2"),
                          ("versioned", "2"), ("versioned/versions/0", "2")):
        doc = infer(http, server, path, add_body()).json()
        assert doc["model_name"] == "versioned"
        assert doc["model_version"] == version
        results[path] = np.array(doc["outputs"][0]["data"], dtype=np.float32)
    np.testing.assert_array_equal(results["versioned/versions/1"], expected + np.float32(100))
    np.testing.assert_array_equal(results["versioned/versions/2"], expected + np.float32(200))
    np.testing.assert_array_equal(results["versioned"], results["versioned/versions/2"])
    np.testing.assert_array_equal(results["versioned/versions/0"], results["versioned/versions/2"])


def test_dynamic_batch_of_many(http: requests.Session, server: ServerProcess) -> None:
    a = np.arange(64 * 4, dtype=np.float32).reshape(64, 2, 2)
    out = outputs_of(infer(http, server, "add", add_body(a, -a * 2)))["sum"]
    assert out["shape"] == [64, 2, 2]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32), (-a).reshape(-1))


def _input(name: str = "a", shape: list[int] | None = None, datatype: str = "FP32",
           data: object = None) -> dict[str, Any]:
    return {"name": name, "shape": [1, 2, 2] if shape is None else shape, "datatype": datatype,
            "data": [1, 2, 3, 4] if data is None else data}


GOOD_B = _input("b")
PARSE = "Could not parse input content. Not valid ndarray detected"


@pytest.mark.parametrize(
    ("model", "body", "status", "error"),
    [
        ("add", {"inputs": [_input(data=[1, 2, 3]), GOOD_B]}, 400,
         "Invalid number of values in tensor proto container - Expected: 4 values; "
         "Actual: 3 values; input name: a"),
        ("add", {"inputs": [_input(data=[[1, 2], [3, 4], [5, 6]]), GOOD_B]}, 400,
         "Invalid number of values in tensor proto container - Expected: 4 values; "
         "Actual: 6 values; input name: a"),
        ("add", {"inputs": [_input(datatype="INT32"), GOOD_B]}, 400,
         "Invalid input precision - Expected: FP32; Actual: INT32; input name: a"),
        ("add", {"inputs": [_input(datatype="FP64"), GOOD_B]}, 400,
         "Invalid input precision - Expected: FP32; Actual: FP64; input name: a"),
        ("int32", {"inputs": [_input("x", [1, 3], "FP32", [1, 2, 3])]}, 400,
         "Invalid input precision - Expected: I32; Actual: FP32; input name: x"),
        ("add", {"inputs": [_input("c"), GOOD_B]}, 400,
         "Missing input with specific name - Required input: a"),
        ("add", {"inputs": [GOOD_B]}, 400, "Invalid number of inputs - Expected: 2; Actual: 1"),
        ("add", {"inputs": [_input(), GOOD_B, _input("c")]}, 400,
         "Invalid number of inputs - Expected: 2; Actual: 3"),
        ("add", {"inputs": [_input(shape=[1, 4]), _input("b", [1, 4])]}, 400,
         "Invalid number of shape dimensions - Expected: (-1,2,2); Actual: (1,4); input name: a"),
        ("add", {"inputs": [_input(shape=[1, 2, 3], data=list(range(6))),
                            _input("b", [1, 2, 3], data=list(range(6)))]}, 400,
         "Invalid input shape - Expected: (-1,2,2); Actual: (1,2,3); input name: a"),
        ("fixed", {"inputs": [_input("x", [2, 3], data=list(range(6)))]}, 400,
         "Invalid input batch size - Expected: 1; Actual: 2; input name: x"),
        ("add", {}, 400, "Invalid JSON structure, missing inputs"),
        ("add", {"inputs": []}, 400, "Invalid JSON structure, missing inputs"),
        ("add", {"id": "x"}, 400, "Invalid JSON structure, missing inputs"),
        ("add", [], 400, "Request body should be JSON object"),
        ("add", {"inputs": [{"name": "a", "datatype": "FP32", "data": [1, 2, 3, 4]}, GOOD_B]},
         400, PARSE),
        ("add", {"inputs": [{"name": "a", "shape": [1, 2, 2], "data": [1, 2, 3, 4]}, GOOD_B]},
         400, PARSE),
        ("add", {"inputs": [_input(data=[1, 2, 3, "4"]), GOOD_B]}, 400, PARSE),
        ("add", {"inputs": [_input(shape=[1, -2, 2]), GOOD_B]}, 400, PARSE),
        ("add", {"inputs": {"a": [1, 2, 3, 4]}}, 400, PARSE),
        ("add", {"inputs": [_input(), GOOD_B], "id": 5}, 400, PARSE),
        ("int32", {"inputs": [_input("x", [1, 3], "INT32", [1, 2, 2147483648])]}, 400, PARSE),
        ("int32", {"inputs": [_input("x", [1, 3], "INT32", [1, 2.5, 3])]}, 400, PARSE),
        ("add", {"inputs": [_input(datatype="FP17"), GOOD_B]}, 400,
         "Could not parse input content. Unsupported data precision detected"),
        ("add", {"inputs": [_input(), GOOD_B], "outputs": [{"name": "nope"}]}, 400,
         "Missing output with specific name - Required output: nope"),
        ("add", {"inputs": [_input(), GOOD_B], "outputs": [{"id": "sum"}]}, 400,
         "Could not parse output content."),
        ("add", {"inputs": [_input(), GOOD_B], "parameters": [1]}, 400,
         "Could not parse request parameters"),
        ("nope", {"inputs": [_input(), GOOD_B]}, 404, "Model with requested name is not found"),
        ("add/versions/5", {"inputs": [_input(), GOOD_B]}, 404,
         "Model with requested version is not found"),
        ("versioned/versions/3", {"inputs": [_input(), GOOD_B]}, 404,
         "Model with requested version is not found"),
    ],
    ids=lambda v: str(v)[:50] if isinstance(v, str) else None,
)
def test_infer_errors(
    http: requests.Session, server: ServerProcess, model: str, body: object, status: int,
    error: str,
) -> None:
    r = infer(http, server, model, body)
    assert r.headers["Content-Type"] == "application/json"
    assert (r.status_code, r.json()) == (status, {"error": error})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "The file is not valid json - Error: The document is empty. Offset: 0"),
        (b'{"inputs": [}', "The file is not valid json - Error: Invalid value. Offset: 12"),
        (b'{"inputs" []}', "The file is not valid json - Error: Missing a colon after a name "
                           "of object member. Offset: 10"),
        (b'{"inputs": []} x', "The file is not valid json - Error: The document root must not "
                              "be followed by other values. Offset: 15"),
        # a cut document: rapidjson's message names what the prefix left open
        (b'{"inputs": [1, 2', "The file is not valid json - Error: Missing a comma or ']' after "
                              "an array element. Offset: 16"),
        (b'{"inputs"', "The file is not valid json - Error: Missing a colon after a name of "
                       "object member. Offset: 9"),
        (b'{"inputs": [], ', "The file is not valid json - Error: Missing a name for object "
                            "member. Offset: 15"),
        (b'{"id": "x', "The file is not valid json - Error: Missing a closing quotation mark "
                       "in string. Offset: 9"),
        (b'{"inputs": [1.', "The file is not valid json - Error: Miss fraction part in number. "
                            "Offset: 14"),
    ],
)
def test_invalid_json_is_412(
    http: requests.Session, server: ServerProcess, body: bytes, error: str
) -> None:
    r = infer(http, server, "add", body)
    assert (r.status_code, r.json()) == (412, {"error": error})


# ------------------------------------------------------------- binary tensor extension


def test_binary_inputs_json_output(http: requests.Session, server: ServerProcess) -> None:
    a_entry, a_raw = binary_input("a", A, "FP32")
    b_entry, b_raw = binary_input("b", B, "FP32")
    body, headers = binary_request({"inputs": [a_entry, b_entry]}, [a_raw, b_raw])
    r = infer(http, server, "add", body, headers)
    assert r.headers["Content-Type"] == "application/json"
    assert HEADER not in r.headers
    out = outputs_of(r)["sum"]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32), (A + B).reshape(-1))


def test_binary_size_from_shape_and_mixed_json(
    http: requests.Session, server: ServerProcess
) -> None:
    a = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    b = np.full((2, 2, 2), 0.5, dtype=np.float32)
    # "a" has no binary_data_size: its size is prod(shape) * 4; "b" is plain JSON data
    doc = {"inputs": [{"name": "a", "shape": [2, 2, 2], "datatype": "FP32"}, tensor("b", b, "FP32")]}
    body, headers = binary_request(doc, [a.tobytes()])
    out = outputs_of(infer(http, server, "add", body, headers))["sum"]
    np.testing.assert_array_equal(np.array(out["data"], dtype=np.float32), (a + b).reshape(-1))


def test_binary_output_per_output(http: requests.Session, server: ServerProcess) -> None:
    r = infer(http, server, "add", add_body(
        id="7", outputs=[{"name": "sum", "parameters": {"binary_data": True}}]))
    doc, blobs = split_response(r)
    assert doc == {"model_name": "add", "id": "7", "model_version": "1", "outputs": [
        {"name": "sum", "shape": [1, 2, 2], "datatype": "FP32",
         "parameters": {"binary_data_size": 16}}]}
    got = np.frombuffer(blobs["sum"], dtype="<f4").reshape(1, 2, 2)
    np.testing.assert_array_equal(got, A + B)
    assert int(r.headers["Content-Length"]) == int(r.headers[HEADER]) + 16


def test_binary_data_output_for_every_output(
    http: requests.Session, server: ServerProcess
) -> None:
    x = np.array([[1, 2, 3, 4], [0.5, -1, 2, 0]], dtype=np.float32)
    entry, raw = binary_input("x", x, "FP32")
    body, headers = binary_request(
        {"inputs": [entry], "parameters": {"binary_data_output": True}}, [raw])
    doc, blobs = split_response(infer(http, server, "multi", body, headers))
    assert [(o["name"], o["shape"], o["parameters"]) for o in doc["outputs"]] == [
        ("double", [2, 4], {"binary_data_size": 32}), ("total", [2], {"binary_data_size": 8})]
    np.testing.assert_array_equal(np.frombuffer(blobs["double"], "<f4").reshape(2, 4), x * 2)
    np.testing.assert_array_equal(np.frombuffer(blobs["total"], "<f4"), x.sum(axis=1))


def test_per_output_flag_overrides_request_flag(
    http: requests.Session, server: ServerProcess
) -> None:
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    r = infer(http, server, "multi", {
        "inputs": [tensor("x", x, "FP32")],
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "double", "parameters": {"binary_data": False}}, {"name": "total"}],
    })
    doc, blobs = split_response(r)
    double, total = doc["outputs"]
    assert double["data"] == (x * 2).reshape(-1).tolist()
    assert "parameters" not in double
    assert total["parameters"] == {"binary_data_size": 4}
    assert np.frombuffer(blobs["total"], "<f4").tolist() == [10.0]


def test_binary_data_false_everywhere_is_plain_json(
    http: requests.Session, server: ServerProcess
) -> None:
    r = infer(http, server, "add", add_body(
        parameters={"binary_data_output": False},
        outputs=[{"name": "sum", "parameters": {"binary_data": False}}]))
    assert HEADER not in r.headers
    assert r.headers["Content-Type"] == "application/json"
    assert outputs_of(r)["sum"]["data"] == [1.5, 2.25, 3.125, 4.1]


def test_fp16_binary_in_and_out(http: requests.Session, server: ServerProcess) -> None:
    x = np.array([[1.5, -2.25, 0.0009765625], [65504 / 2, -0.5, 3]], dtype=np.float16)
    entry, raw = binary_input("x", x.astype("<f2"), "FP16")
    body, headers = binary_request(
        {"inputs": [entry], "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}, [raw])
    doc, blobs = split_response(infer(http, server, "fp16", body, headers))
    assert doc["outputs"][0]["datatype"] == "FP16"
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 12}
    got = np.frombuffer(blobs["y"], dtype="<f2").reshape(2, 3)
    np.testing.assert_array_equal(got, x * np.float16(2))


def test_fp16_binary_in_json_out(http: requests.Session, server: ServerProcess) -> None:
    # A deliberate difference: OVMS refuses to write FP16 outputs as JSON; ovserve writes numbers.
    x = np.array([[0.5, 1.25, -3]], dtype=np.float16)
    entry, raw = binary_input("x", x, "FP16")
    body, headers = binary_request({"inputs": [entry]}, [raw])
    out = outputs_of(infer(http, server, "fp16", body, headers))["y"]
    assert (out["datatype"], out["shape"], out["data"]) == ("FP16", [1, 3], [1.0, 2.5, -6.0])


def test_int32_binary_round_trip(http: requests.Session, server: ServerProcess) -> None:
    x = np.array([[2**31 // 3 - 1, -5, 0]], dtype=np.int32)
    entry, raw = binary_input("x", x, "INT32")
    body, headers = binary_request(
        {"inputs": [entry], "parameters": {"binary_data_output": True}}, [raw])
    doc, blobs = split_response(infer(http, server, "int32", body, headers))
    assert doc["outputs"][0]["datatype"] == "INT32"
    np.testing.assert_array_equal(np.frombuffer(blobs["y"], "<i4").reshape(1, 3), x * 3)


def test_large_binary_body(http: requests.Session, server: ServerProcess) -> None:
    # Over the codec's "large body" threshold (256 KiB), so decoding runs off the event loop.
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20000, 2, 2)).astype(np.float32)
    b = rng.standard_normal((20000, 2, 2)).astype(np.float32)
    a_entry, a_raw = binary_input("a", a, "FP32")
    b_entry, b_raw = binary_input("b", b, "FP32")
    body, headers = binary_request(
        {"inputs": [a_entry, b_entry], "parameters": {"binary_data_output": True}}, [a_raw, b_raw])
    doc, blobs = split_response(infer(http, server, "add", body, headers))
    assert doc["outputs"][0]["shape"] == [20000, 2, 2]
    np.testing.assert_array_equal(np.frombuffer(blobs["sum"], "<f4").reshape(a.shape), a + b)


def _binary_error_cases() -> list[tuple[str, bytes, dict[str, str], int, str]]:
    a_entry, a_raw = binary_input("a", A, "FP32")
    b_entry, b_raw = binary_input("b", B, "FP32")
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = []

    both = dict(a_entry, data=[1, 2, 3, 4])
    body, headers = binary_request({"inputs": [both, b_entry]}, [a_raw, b_raw])
    cases.append(("both", body, headers, 400,
                  "Request contains values both in binary data and in content value"))

    body, headers = binary_request({"inputs": [a_entry, b_entry]}, [a_raw, b_raw[:-1]])
    cases.append(("short", body, headers, 400,
                  "Received buffer size is smaller than binary_data_size parameter indicates"))

    body, headers = binary_request({"inputs": [a_entry, b_entry]}, [a_raw, b_raw])
    headers = {**headers, HEADER: str(len(body) + 1)}
    cases.append(("header too long", body, headers, 400,
                  "Inference-Header-Content-Length header exceeds actual payload length"))

    body, headers = binary_request({"inputs": [a_entry, b_entry]}, [a_raw, b_raw])
    cases.append(("header not a number", body, {**headers, HEADER: "abc"}, 400,
                  "Invalid Inference-Header-Content-Length header value: 'abc'"))

    small = dict(a_entry, parameters={"binary_data_size": 12})
    body, headers = binary_request({"inputs": [small, b_entry]}, [a_raw[:12], b_raw])
    cases.append(("size vs shape", body, headers, 400,
                  "Invalid content size of tensor proto - Expected: 16 bytes; Actual: 12 bytes; "
                  "input name: a"))

    bad = dict(a_entry, parameters={"binary_data_size": "16"})
    body, headers = binary_request({"inputs": [bad, b_entry]}, [a_raw, b_raw])
    cases.append(("size not int", body, headers, 400,
                  "binary_data_size parameter is invalid and cannot be parsed"))

    body, headers = binary_request({"inputs": [a_entry, b_entry]}, [a_raw, b_raw])
    cut = int(headers[HEADER]) - 1  # the JSON part loses its closing brace
    cases.append(("json cut", body, {**headers, HEADER: str(cut)}, 412,
                  f"The file is not valid json - Error: Missing a comma or '}}' after an object "
                  f"member. Offset: {cut}"))
    return cases


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [case[1:] for case in _binary_error_cases()],
    ids=[case[0] for case in _binary_error_cases()],
)
def test_binary_errors(
    http: requests.Session, server: ServerProcess, body: bytes, headers: dict[str, str],
    status: int, error: str,
) -> None:
    r = infer(http, server, "add", body, headers)
    assert (r.status_code, r.json()) == (status, {"error": error})


# ---------------------------------------------------------------------------- BYTES


def test_bytes_json_in_json_out(http: requests.Session, server: ServerProcess) -> None:
    texts = ["hello", "", "zażółć ✓", "a b\tc"]
    r = infer(http, server, "strings", {"inputs": [
        {"name": "text", "shape": [4], "datatype": "BYTES", "data": texts}]})
    out = outputs_of(r)["echo"]
    assert out == {"name": "echo", "shape": [4], "datatype": "BYTES", "data": texts}


def test_bytes_binary_in_binary_out(http: requests.Session, server: ServerProcess) -> None:
    items = [b"ab", b"", "zażółć".encode(), b"\xff\xfe\x00raw", b"x" * 300]
    blob = pack_bytes(items)
    body, headers = binary_request({
        "inputs": [{"name": "text", "shape": [len(items)], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)}}],
        "outputs": [{"name": "echo", "parameters": {"binary_data": True}}],
    }, [blob])
    doc, blobs = split_response(infer(http, server, "strings", body, headers))
    out = doc["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("BYTES", [len(items)])
    assert out["parameters"] == {"binary_data_size": len(blob)}
    assert blobs["echo"] == blob
    assert unpack_bytes(blobs["echo"]) == items


def test_lone_bytes_input_takes_the_whole_rest(
    http: requests.Session, server: ServerProcess
) -> None:
    blob = pack_bytes([b"only"])
    body, headers = binary_request(
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}, [blob])
    out = outputs_of(infer(http, server, "strings", body, headers))["echo"]
    assert out["data"] == ["only"]


def test_bytes_binary_in_json_out_replaces_invalid_utf8(
    http: requests.Session, server: ServerProcess
) -> None:
    blob = pack_bytes([b"ok", b"\xffbad"])
    body, headers = binary_request({"inputs": [
        {"name": "text", "shape": [2], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(blob)}}]}, [blob])
    out = outputs_of(infer(http, server, "strings", body, headers))["echo"]
    assert out["data"] == ["ok", "\ufffdbad"]


@pytest.mark.parametrize(
    ("blob", "error"),
    [
        (struct.pack("<I", 10) + b"abc", "Invalid content size of tensor proto - Batch length "
         "metadata exceeded buffer size, buffer size: 7, batch length: 10; input name: text"),
        (pack_bytes([b"abc"]) + b"\x01\x00", "Invalid content size of tensor proto - Processed "
         "bytes: 7 do not equal to buffer size: 9; input name: text"),
    ],
)
def test_bytes_binary_errors(
    http: requests.Session, server: ServerProcess, blob: bytes, error: str
) -> None:
    body, headers = binary_request({"inputs": [
        {"name": "text", "shape": [1], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(blob)}}]}, [blob])
    r = infer(http, server, "strings", body, headers)
    assert (r.status_code, r.json()) == (400, {"error": error})


def test_bytes_count_must_match_shape(http: requests.Session, server: ServerProcess) -> None:
    r = infer(http, server, "strings", {"inputs": [
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "b"]}]})
    assert (r.status_code, r.json()) == (400, {"error": (
        "Invalid number of values in tensor proto container - Expected: 3 values; "
        "Actual: 2 values; input name: text")})


@pytest.mark.xfail(
    strict=True,
    reason="OpenVINO's Python string tensors go through numpy 'S' arrays, which drop trailing "
           "NUL bytes (backend/openvino.py)",
)
def test_bytes_keep_trailing_nul(http: requests.Session, server: ServerProcess) -> None:
    items = [b"ab\x00", b"\x00"]
    blob = pack_bytes(items)
    body, headers = binary_request({
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(blob)}}],
        "parameters": {"binary_data_output": True},
    }, [blob])
    _, blobs = split_response(infer(http, server, "strings", body, headers))
    assert unpack_bytes(blobs["echo"]) == items
