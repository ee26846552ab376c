"""TF-Serving v1 REST over real HTTP against a real server and real OpenVINO models."""

from __future__ import annotations

import base64
import io
import json
import socket
from http.client import HTTPConnection
from typing import Any

import numpy as np
import pytest
import requests
from ovtest_server import ServerProcess
from PIL import Image

pytestmark = pytest.mark.timeout(180)


def post(http: requests.Session, server: ServerProcess, path: str, body: object) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http.post(server.url + path, data=data, timeout=30)


# ----------------------------------------------------------------- status and metadata


def test_status_body_is_byte_exact(http: requests.Session, server: ServerProcess) -> None:
    r = http.get(f"{server.url}/v1/models/add", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.text == (
        '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE",\n'
        '   "status": {\n    "error_code": "OK",\n    "error_message": "OK"\n   }\n  }\n ]\n}\n'
    )


def test_status_lists_every_version(http: requests.Session, server: ServerProcess) -> None:
    body = http.get(f"{server.url}/v1/models/versioned", timeout=10).json()
    versions = {s["version"]: s["state"] for s in body["model_version_status"]}
    assert versions == {"1": "AVAILABLE", "2": "AVAILABLE"}
    one = http.get(f"{server.url}/v1/models/versioned/versions/1", timeout=10).json()
    assert [s["version"] for s in one["model_version_status"]] == ["1"]


def test_metadata_shows_signature(http: requests.Session, server: ServerProcess) -> None:
    body = http.get(f"{server.url}/v1/models/add/metadata", timeout=10).json()
    assert body["modelSpec"] == {"name": "add", "signatureName": "", "version": "1"}
    sig = body["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    a = sig["inputs"]["a"]
    assert a["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in a["tensorShape"]["dim"]] == ["-1", "2", "2"]
    assert set(sig["outputs"]) == {"sum"}
    ints = http.get(f"{server.url}/v1/models/int32/metadata", timeout=10).json()
    spec = ints["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    assert spec["inputs"]["x"]["dtype"] == "DT_INT32"


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/v1/models/nope", 404, "Model with requested name is not found"),
        ("GET", "/v1/models/add/versions/7", 404, "Model with requested version is not found"),
        ("GET", "/v1/models/add/versions/99999999999999999999", 404, "Model with requested version is not found"),
        ("GET", "/v1/models/add/versions/x", 400, "Invalid request URL"),
        ("GET", "/v1/models/nope/metadata", 404, "Model with requested name is not found"),
        ("GET", "/v1/nothing", 400, "Invalid request URL"),
        ("GET", "/", 400, "Invalid request URL"),
        ("PUT", "/v1/models/add", 406, "Unsupported method"),
        ("DELETE", "/v1/models/add:predict", 406, "Unsupported method"),
        ("GET", "/v1/models/add:predict", 406, "Unsupported method"),
        ("POST", "/v1/models/add", 406, "Unsupported method"),
        ("POST", "/v1/models/add:classify", 404, "Requested REST resource not found"),
        ("POST", "/v1/models/add:regress", 404, "Requested REST resource not found"),
        ("GET", "/v1/models/a..b", 400, "The provided base path is invalid or doesn't exists"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_url_and_method_errors(
    http: requests.Session, server: ServerProcess, method: str, path: str, status: int, error: str
) -> None:
    r = http.request(method, server.url + path, data=b"{}" if method != "GET" else None, timeout=10)
    assert r.status_code == status, r.text
    assert r.json() == {"error": error}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/add:predict", 406),
        ("PUT", "/v2/models/add/infer", 406),
        ("GET", "/v1/config/reload", 406),
        ("GET", "/model/add:predict", 200),  # MindSpore's "only support POST" answer
    ],
)
def test_refused_method_on_a_body_route_announces_the_close(
    server: ServerProcess, method: str, path: str, status: int
) -> None:
    """A body route refuses a method before reading the body, and Tornado then drops the
    connection: the answer must say ``Connection: close`` so a keep-alive client does not reuse it.
    """
    conn = HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        r.read()
        assert r.status == status
        assert r.getheader("Connection") == "close"
        assert r.will_close
    finally:
        conn.close()


def test_served_post_keeps_the_connection_alive(server: ServerProcess) -> None:
    conn = HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", "/v1/models/add:predict",
                         json.dumps({"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 2], [3, 4]]]}}))
            r = conn.getresponse()
            r.read()
            assert r.getheader("Connection") is None
            assert not r.will_close
    finally:
        conn.close()


def test_predict_is_served_like_every_other_route(server: ServerProcess) -> None:
    """:predict is served before Tornado's routing (http/direct.py): the path is unquoted, the query
    ignored, HTTP/1.0 keep-alive honoured, and the headers are those of the other routes."""
    body = json.dumps({"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 2], [3, 4]]]}})
    conn = HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request("GET", "/v1/models/add")
        status = conn.getresponse()
        status.read()
        conn.request("POST", "/v1/models/%61dd/versions/1:predict?trace=1", body)
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read()) == {"outputs": [[[2.0, 4.0], [6.0, 8.0]]]}
        names = [name for name, _ in r.getheaders()]
        assert sorted(names) == sorted(n for n, _ in status.getheaders() if n != "Etag")  # GET only
        assert r.getheader("Server") == status.getheader("Server")
        assert r.getheader("Content-Type") == "application/json"
    finally:
        conn.close()
    conn = HTTPConnection(server.host, server.port, timeout=10)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    try:
        for _ in range(2):
            conn.request("POST", "/v1/models/add:predict", body, {"Connection": "keep-alive"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            assert r.getheader("Connection") == "Keep-Alive"
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    """Three requests in one write, answered in order on the same connection (the inference
    routes answer inside Tornado's message handling, the others through a RequestHandler)."""
    bodies = [json.dumps({"inputs": {"a": [[[v, v], [v, v]]], "b": [[[0, 0], [0, 0]]]}}).encode()
              for v in (1, 2)]
    head = "POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n"
    data = (head.format(len(bodies[0])).encode() + bodies[0]
            + b"GET /v1/models/add HTTP/1.1\r\nHost: x\r\n\r\n"
            + head.format(len(bodies[1])).encode() + bodies[1])
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        answers = [_read_response(reader) for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert answers[0][1] == {"outputs": [[[1.0, 1.0], [1.0, 1.0]]]}
    assert "model_version_status" in answers[1][1]
    assert answers[2][1] == {"outputs": [[[2.0, 2.0], [2.0, 2.0]]]}


def test_large_body_read_into_its_buffer_leaves_the_next_request_intact(
    server: ServerProcess,
) -> None:
    """A body over 64 KiB is read into one buffer of its Content-Length (http/protocol.py): the
    request right behind it on the connection, sent in the same write, is parsed whole."""
    a = np.arange(2000 * 4, dtype=np.float32).reshape(2000, 2, 2)
    large = json.dumps({"inputs": {"a": a.tolist(), "b": a.tolist()}}).encode()
    small = json.dumps({"inputs": {"a": [[[1, 1], [1, 1]]], "b": [[[2, 2], [2, 2]]]}}).encode()
    assert len(large) > 64 * 1024
    head = "POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n"
    data = head.format(len(large)).encode() + large + head.format(len(small)).encode() + small
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(data)
        reader = sock.makefile("rb")
        (first_status, first), (second_status, second) = (_read_response(reader) for _ in range(2))
    assert (first_status, second_status) == (200, 200)
    np.testing.assert_array_equal(np.array(first["outputs"], dtype=np.float32), 2 * a)
    assert second == {"outputs": [[[3.0, 3.0], [3.0, 3.0]]]}


def _read_response(reader: Any) -> tuple[int, Any]:
    """One HTTP/1.1 response with a Content-Length: its status and its JSON body."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, json.loads(reader.read(length))


def test_inputs_with_different_batch_sizes_fail_the_inference(
    http: requests.Session, server: ServerProcess
) -> None:
    """Each input alone fits ``[-1,2,2]``; OpenVINO refuses the pair, which do not broadcast
    (docs/troubleshooting.md)."""
    body = {"inputs": {"a": [[[1, 2], [3, 4]]] * 2, "b": [[[1, 2], [3, 4]]] * 3}}  # 2 vs 3
    r = post(http, server, "/v1/models/add:predict", body)
    assert r.status_code == 500, r.text
    assert "error" in r.json() and "Exception from" not in r.json()["error"]


def test_label_is_accepted_and_ignored(http: requests.Session, server: ServerProcess) -> None:
    r = http.get(f"{server.url}/v1/models/add/labels/stable", timeout=10)
    assert r.status_code == 200
    assert r.json()["model_version_status"][0]["version"] == "1"


# ----------------------------------------------------------------- predict


def test_predict_column_format(http: requests.Session, server: ServerProcess) -> None:
    a = np.arange(16, dtype=np.float32).reshape(4, 2, 2)
    b = np.full((4, 2, 2), 0.5, dtype=np.float32)
    r = post(http, server, "/v1/models/add:predict", {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert r.status_code == 200, r.text
    assert np.array_equal(np.array(r.json()["outputs"], dtype=np.float32), a + b)


def test_predict_row_format_named(http: requests.Session, server: ServerProcess) -> None:
    instances = [{"a": [[1, 2], [3, 4]], "b": [[10, 20], [30, 40]]}, {"a": [[0, 0], [0, 1]], "b": [[0, 0], [0, 1]]}]
    r = post(http, server, "/v1/models/add:predict", {"instances": instances})
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [[[11.0, 22.0], [33.0, 44.0]], [[0.0, 0.0], [0.0, 2.0]]]}


def test_predict_row_unnamed_single_input(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/multi:predict", {"instances": [[1, 2, 3, 4], [0.5, 0, 0, 0]]})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "predictions": [
            {"double": [2.0, 4.0, 6.0, 8.0], "total": 10.0},
            {"double": [1.0, 0.0, 0.0, 0.0], "total": 0.5},
        ]
    }


def test_predict_multi_output_column(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/multi:predict", {"inputs": {"x": [[1, 2, 3, 4]]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": {"double": [[2.0, 4.0, 6.0, 8.0]], "total": [10.0]}}


def test_predict_int32_and_fp16(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/int32:predict", {"inputs": {"x": [[1, 2, 3]]}})
    assert r.json() == {"outputs": [[3, 6, 9]]}
    r = post(http, server, "/v1/models/fp16:predict", {"inputs": {"x": [[0.5, 1.5, -2]]}})
    assert r.status_code == 200, r.text
    assert r.json() == {"outputs": [[1.0, 3.0, -4.0]]}


def test_predict_specific_versions(http: requests.Session, server: ServerProcess) -> None:
    body = {"inputs": {"a": [[[0, 0], [0, 0]]], "b": [[[0, 0], [0, 1]]]}}
    default = post(http, server, "/v1/models/versioned:predict", body).json()["outputs"]
    v1 = post(http, server, "/v1/models/versioned/versions/1:predict", body).json()["outputs"]
    assert default == [[[200.0, 200.0], [200.0, 201.0]]]
    assert v1 == [[[100.0, 100.0], [100.0, 101.0]]]


def test_predict_floats_round_trip_shortest(http: requests.Session, server: ServerProcess) -> None:
    r = post(http, server, "/v1/models/fixed:predict", {"inputs": {"x": [[0.1, 1e-7, 3]]}})
    assert r.status_code == 200, r.text
    text = r.text.replace(" ", "")
    assert "0.1," in text and "3.0" in text
    assert np.array_equal(np.array(r.json()["outputs"], dtype=np.float32), np.array([[0.1, 1e-7, 3]], dtype=np.float32))


def test_predict_large_bodies_in_every_layout(http: requests.Session, server: ServerProcess) -> None:
    # Bodies over 64 KiB go through the C scanner (codecs/numjson.py): same answers.
    rng = np.random.default_rng(11)
    a = rng.random((3000, 2, 2), dtype=np.float32)
    b = rng.standard_normal((3000, 2, 2)).astype(np.float32)
    column = post(http, server, "/v1/models/add:predict", {"inputs": {"a": a.tolist(), "b": b.tolist()}})
    assert column.status_code == 200, column.text
    assert np.array_equal(np.array(column.json()["outputs"], dtype=np.float32), a + b)
    x = rng.random((5000, 4), dtype=np.float32)
    row = post(http, server, "/v1/models/multi:predict", {"instances": x.tolist()})
    assert row.status_code == 200, row.text
    predictions = row.json()["predictions"]
    assert np.array_equal(np.array([p["double"] for p in predictions], dtype=np.float32), x * 2)
    ints = rng.integers(-1000, 1000, (4000, 3))
    scaled = post(http, server, "/v1/models/int32:predict", {"inputs": {"x": ints.tolist()}})
    assert np.array_equal(np.array(scaled.json()["outputs"]), ints * 3)


def test_predict_large_ragged_body_gets_the_usual_error(http: requests.Session, server: ServerProcess) -> None:
    rows = np.random.default_rng(12).random((5000, 4)).tolist()
    rows[-1] = rows[-1][:3]
    r = post(http, server, "/v1/models/multi:predict", {"instances": rows})
    assert r.status_code == 400
    assert r.json() == {"error": "Could not parse instance content. Not valid ndarray detected"}


def _png(width: int, height: int, color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_predict_b64_images_are_decoded_and_resized(http: requests.Session, server: ServerProcess) -> None:
    img = _png(12, 8, (10, 20, 30))  # model wants 4x6; decoded as BGR like OVMS (OpenCV)
    r = post(http, server, "/v1/models/image:predict", {"instances": [{"image": {"b64": img}}]})
    assert r.status_code == 200, r.text
    (mean,) = r.json()["predictions"]
    assert mean == pytest.approx([30.0, 20.0, 10.0])


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/v1/models/add:predict", b"{not json", 412, "The file is not valid json"),
        ("/v1/models/add:predict", b"[1]", 400, "Request body should be JSON object"),
        ("/v1/models/add:predict", {"instances": [], "inputs": {}}, 400, "Invalid JSON structure. Could not detect row or column format"),
        ("/v1/models/add:predict", {"signature_name": "x"}, 400, "Invalid JSON structure. Could not detect row or column format"),
        ("/v1/models/add:predict", {"inputs": {"a": [[[1, 2], [3, 4]]], "c": [[[1, 2], [3, 4]]]}}, 400, "Missing input with specific name - Required input: b"),
        ("/v1/models/add:predict", {"inputs": {"a": [[[1, 2], [3, 4]]]}}, 400, "Invalid number of inputs - Expected: 2; Actual: 1"),
        ("/v1/models/add:predict", {"instances": [{"b": [[1, 2], [3, 4]]}]}, 400, "Invalid number of inputs - Expected: 2; Actual: 1"),
        ("/v1/models/add:predict", {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 2], [3, 4]]], "c": [[[1, 2], [3, 4]]]}}, 400, "Invalid number of inputs - Expected: 2; Actual: 3"),
        ("/v1/models/add:predict", {"inputs": {"a": [[[1, 2], [3]]], "b": [[[1, 2], [3, 4]]]}}, 400, "Could not parse input content. Not valid ndarray detected"),
        ("/v1/models/add:predict", {"inputs": {"a": [[1, 2, 3]], "b": [[1, 2, 3]]}}, 400, "Invalid number of shape dimensions - Expected: (-1,2,2); Actual: (1,3); input name: a"),
        ("/v1/models/add:predict", {"instances": "x"}, 400, "Invalid JSON structure. Nonamed instance is not an array."),
        ("/v1/models/add:predict", {"instances": [{"a": [[1, 2], [3, 4]]}, 5]}, 400, "Invalid JSON structure. One of named instances is not a JSON object."),
        ("/v1/models/add:predict", {"instances": [[1, 2]]}, 400, "Inputs inside buffer does not match expected format."),
        ("/v1/models/fixed:predict", {"inputs": {"x": [[1, 2, 3], [4, 5, 6]]}}, 400, "Invalid input batch size - Expected: 1; Actual: 2; input name: x"),
        ("/v1/models/fixed:predict", {"inputs": {"x": [[1, 2]]}}, 400, "Invalid input shape - Expected: (1,3); Actual: (1,2); input name: x"),
        ("/v1/models/fixed:predict", {"inputs": {"x": [[True, False, True]]}}, 400, "Could not parse input content. Not valid ndarray detected"),
        ("/v1/models/image:predict", {"instances": [{"image": {"b64": "!!!"}}]}, 400, ""),
        ("/v1/models/image:predict", {"instances": [{"image": {"b64": base64.b64encode(b"not an image").decode()}}]}, 400, "Image parsing failed"),
        ("/v1/models/nope:predict", {"inputs": {"x": [1]}}, 404, "Model with requested name is not found"),
        ("/v1/models/add/versions/3:predict", {"inputs": {"x": [1]}}, 404, "Model with requested version is not found"),
    ],
    ids=lambda v: str(v)[:50],
)
def test_predict_errors(
    http: requests.Session, server: ServerProcess, path: str, body: object, status: int, error: str
) -> None:
    r = post(http, server, path, body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert r.json()["error"].startswith(error), r.json()["error"]


def test_deeply_nested_body_is_refused_not_crashing(http: requests.Session, server: ServerProcess) -> None:
    body = b'{"inputs": {"x": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}}"
    r = post(http, server, "/v1/models/fixed:predict", body)
    assert r.status_code in (400, 412)
    assert http.get(f"{server.url}/v1/models/fixed", timeout=10).status_code == 200


# ----------------------------------------------------------------- config endpoints


def test_config_status_and_hash_header(http: requests.Session, server: ServerProcess) -> None:
    r = http.get(f"{server.url}/v1/config", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"add", "multi", "int32", "fp16", "fixed", "image", "versioned", "strings"}
    assert body["add"]["model_version_status"][0]["state"] == "AVAILABLE"
    digest = r.headers["X-Ovserve-Config-Hash"]
    assert len(digest) == 64


def test_reload_without_change_answers_200(http: requests.Session, server: ServerProcess) -> None:
    r = http.post(f"{server.url}/v1/config/reload", timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["add"]["model_version_status"][0]["state"] == "AVAILABLE"
    assert r.headers["X-Ovserve-Config-Hash"] == http.get(f"{server.url}/v1/config", timeout=10).headers["X-Ovserve-Config-Hash"]
