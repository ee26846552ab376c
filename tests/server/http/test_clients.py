"""Real client libraries against a real server: ``tritonclient.http`` for KServe v2 and
``ovmsclient`` for the TF-Serving v1 API, as users of OVMS would call them."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import ovmsclient
import pytest
import tritonclient.http as triton
from ovmsclient.tfs_compat.base.errors import InvalidInputError, ModelNotFoundError
from ovtest_server import ServerProcess
from PIL import Image
from tritonclient.utils import InferenceServerException

from ovserve.server import __version__

pytestmark = pytest.mark.timeout(180)


def address(server: ServerProcess) -> str:
    """Both clients want ``host:port`` without a scheme."""
    return f"{server.host}:{server.port}"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(address(server), network_timeout=60.0)
    yield c
    c.close()


@pytest.fixture(scope="module")
def ovms(server: ServerProcess) -> ovmsclient.tfs_compat.http.serving_client.HttpClient:
    return ovmsclient.make_http_client(address(server))


def infer_input(name: str, array: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    return item


A = np.array([[[1.0, 2.0], [3.0, 4.0]], [[-1.5, 0.1, ], [1e-3, 7e7]]], dtype=np.float32)
B = np.array([[[0.5, 0.25], [0.125, 0.1]], [[2.0, -0.1], [3.0, 1.0]]], dtype=np.float32)


# ------------------------------------------------------------------------- tritonclient


def test_triton_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("add")
    assert client.is_model_ready("versioned", "1")
    assert client.is_model_ready("versioned", "2")
    assert not client.is_model_ready("versioned", "3")
    assert not client.is_model_ready("nope")


def test_triton_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.get_server_metadata() == {
        "name": "ovserve", "version": __version__, "extensions": ["binary_tensor_data"]}


def test_triton_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.get_model_metadata("add") == {
        "name": "add", "versions": ["1"], "platform": "OpenVINO",
        "inputs": [{"name": "a", "datatype": "FP32", "shape": [-1, 2, 2]},
                   {"name": "b", "datatype": "FP32", "shape": [-1, 2, 2]}],
        "outputs": [{"name": "sum", "datatype": "FP32", "shape": [-1, 2, 2]}],
    }
    meta = client.get_model_metadata("versioned", model_version="1")  # every AVAILABLE version
    assert (meta["name"], meta["versions"]) == ("versioned", ["1", "2"])


def test_triton_metadata_of_unknown_model(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("nope")
    assert str(caught.value.status()) == "404"
    assert caught.value.message() == "Model with requested name is not found"


@pytest.mark.parametrize("a_binary", [True, False])
@pytest.mark.parametrize("b_binary", [True, False])
@pytest.mark.parametrize("out_binary", [True, False, None], ids=["out-bin", "out-json", "out-all"])
def test_triton_infer_add(
    client: triton.InferenceServerClient, a_binary: bool, b_binary: bool, out_binary: bool | None
) -> None:
    inputs = [infer_input("a", A, "FP32", a_binary), infer_input("b", B, "FP32", b_binary)]
    # None: no outputs listed, so tritonclient asks for every output in binary form
    outputs = None if out_binary is None else [
        triton.InferRequestedOutput("sum", binary_data=out_binary)]
    result = client.infer("add", inputs, outputs=outputs, request_id="req-9")
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "add", "1", "req-9")
    out = result.get_output("sum")
    assert (out["datatype"], out["shape"]) == ("FP32", [2, 2, 2])
    if out_binary is False:
        assert "data" in out
    else:
        assert out["parameters"] == {"binary_data_size": A.nbytes}
    got = result.as_numpy("sum")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, A + B)


@pytest.mark.parametrize("out_binary", [True, False])
def test_triton_requested_output_only(
    client: triton.InferenceServerClient, out_binary: bool
) -> None:
    x = np.array([[1, 2, 3, 4], [0.25, -8, 0, 1]], dtype=np.float32)
    result = client.infer("multi", [infer_input("x", x, "FP32", True)],
                          outputs=[triton.InferRequestedOutput("total", binary_data=out_binary)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["total"]
    assert result.as_numpy("double") is None
    np.testing.assert_array_equal(result.as_numpy("total"), x.sum(axis=1))


def test_triton_multi_outputs_all_binary(client: triton.InferenceServerClient) -> None:
    x = np.array([[1, 2, 3, 4]], dtype=np.float32)
    result = client.infer("multi", [infer_input("x", x, "FP32", False)])
    np.testing.assert_array_equal(result.as_numpy("double"), x * 2)
    np.testing.assert_array_equal(result.as_numpy("total"), x.sum(axis=1))


@pytest.mark.parametrize("binary", [True, False])
def test_triton_int32(client: triton.InferenceServerClient, binary: bool) -> None:
    x = np.array([[7, -3, 715827882]], dtype=np.int32)
    result = client.infer("int32", [infer_input("x", x, "INT32", binary)],
                          outputs=[triton.InferRequestedOutput("y", binary_data=binary)])
    got = result.as_numpy("y")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, x * 3)


def test_triton_fp16(client: triton.InferenceServerClient) -> None:
    x = np.array([[1.5, -2.25, 0.0009765625], [100, 0.5, -3]], dtype=np.float16)
    result = client.infer("fp16", [infer_input("x", x, "FP16", True)])
    got = result.as_numpy("y")
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, x * np.float16(2))


def test_triton_versions(client: triton.InferenceServerClient) -> None:
    inputs = [infer_input("a", A, "FP32", True), infer_input("b", B, "FP32", True)]
    one = client.infer("versioned", inputs, model_version="1")
    two = client.infer("versioned", inputs, model_version="2")
    default = client.infer("versioned", inputs)
    assert [r.get_response()["model_version"] for r in (one, two, default)] == ["1", "2", "2"]
    np.testing.assert_array_equal(one.as_numpy("sum"), A + B + np.float32(100))
    np.testing.assert_array_equal(two.as_numpy("sum"), A + B + np.float32(200))
    np.testing.assert_array_equal(default.as_numpy("sum"), two.as_numpy("sum"))


@pytest.mark.parametrize("in_binary", [True, False])
@pytest.mark.parametrize("out_binary", [True, False])
def test_triton_bytes(
    client: triton.InferenceServerClient, in_binary: bool, out_binary: bool
) -> None:
    texts = ["hello", "", "zażółć ✓", "x" * 200]
    array = np.array([t.encode() for t in texts], dtype=np.object_)
    result = client.infer("strings", [infer_input("text", array, "BYTES", in_binary)],
                          outputs=[triton.InferRequestedOutput("echo", binary_data=out_binary)])
    got = result.as_numpy("echo")
    assert got.shape == (4,)
    # tritonclient gives bytes for binary outputs and the JSON strings as they came otherwise
    expected = [t.encode() for t in texts] if out_binary else texts
    assert got.tolist() == expected


def test_triton_bytes_raw(client: triton.InferenceServerClient) -> None:
    array = np.array([b"\xff\xfe", b"\x00mid\x00dle", b"end"], dtype=np.object_)
    result = client.infer("strings", [infer_input("text", array, "BYTES", True)])
    assert result.as_numpy("echo").tolist() == array.tolist()


@pytest.mark.parametrize(
    ("name", "array", "datatype", "error"),
    [
        ("a", A.astype(np.int32), "INT32",
         "Invalid input precision - Expected: FP32; Actual: INT32; input name: a"),
        ("a", A.reshape(2, 4), "FP32",
         "Invalid number of shape dimensions - Expected: (-1,2,2); Actual: (2,4); input name: a"),
    ],
)
def test_triton_errors(
    client: triton.InferenceServerClient, name: str, array: np.ndarray, datatype: str,
    error: str,
) -> None:
    inputs = [infer_input(name, array, datatype, True),
              infer_input("b", array.astype(B.dtype) if datatype == "FP32" else B, "FP32", True)]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("add", inputs)
    assert str(caught.value.status()) == "400"
    assert caught.value.message() == error


def test_triton_unknown_model(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as caught:
        client.infer("nope", [infer_input("a", A, "FP32", True)])
    assert str(caught.value.status()) == "404"
    assert caught.value.message() == "Model with requested name is not found"


# --------------------------------------------------------------------------- ovmsclient


def test_ovms_model_status(ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient) -> None:
    assert ovms.get_model_status("add") == {
        1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}
    assert ovms.get_model_status("versioned") == {
        1: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"},
        2: {"state": "AVAILABLE", "error_code": 0, "error_message": "OK"}}
    assert list(ovms.get_model_status("versioned", model_version=1)) == [1]


def test_ovms_model_metadata(ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient) -> None:
    assert ovms.get_model_metadata("add") == {
        "model_version": 1,
        "inputs": {"a": {"dtype": "DT_FLOAT", "shape": [-1, 2, 2]},
                   "b": {"dtype": "DT_FLOAT", "shape": [-1, 2, 2]}},
        "outputs": {"sum": {"dtype": "DT_FLOAT", "shape": [-1, 2, 2]}},
    }
    assert ovms.get_model_metadata("versioned", model_version=1)["model_version"] == 1
    assert ovms.get_model_metadata("versioned")["model_version"] == 2


def test_ovms_predict_add(ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient) -> None:
    got = ovms.predict({"a": A, "b": B}, "add")
    assert isinstance(got, np.ndarray)
    np.testing.assert_array_equal(got.astype(np.float32), A + B)


def test_ovms_predict_versions(ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient) -> None:
    one = ovms.predict({"a": A, "b": B}, "versioned", model_version=1)
    two = ovms.predict({"a": A, "b": B}, "versioned", model_version=2)
    np.testing.assert_array_equal(np.asarray(one, np.float32), A + B + np.float32(100))
    np.testing.assert_array_equal(np.asarray(two, np.float32), A + B + np.float32(200))


def test_ovms_predict_multi_and_int32(
    ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient,
) -> None:
    x = np.array([[1, 2, 3, 4], [5, 6, 7, 8.5]], dtype=np.float32)
    got = ovms.predict({"x": x}, "multi")
    assert set(got) == {"double", "total"}
    np.testing.assert_array_equal(np.asarray(got["double"], np.float32), x * 2)
    np.testing.assert_array_equal(np.asarray(got["total"], np.float32), x.sum(axis=1))
    ints = np.array([[1, -2, 3]], dtype=np.int32)
    np.testing.assert_array_equal(ovms.predict({"x": ints}, "int32"), ints * 3)


def test_ovms_predict_image_bytes(
    ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient,
) -> None:
    # ovmsclient sends bytes as {"b64": ...}; the NHWC model gets the decoded image in BGR order
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (10, 20, 30)).save(buffer, format="PNG")
    got = ovms.predict({"image": buffer.getvalue()}, "image")
    np.testing.assert_array_equal(np.asarray(got, np.float32), [[30.0, 20.0, 10.0]])


def test_ovms_errors(ovms: ovmsclient.tfs_compat.http.serving_client.HttpClient) -> None:
    with pytest.raises(ModelNotFoundError, match="Model with requested name is not found"):
        ovms.predict({"a": A, "b": B}, "nope")
    with pytest.raises(ModelNotFoundError, match="Model with requested version is not found"):
        ovms.get_model_status("add", model_version=5)
    with pytest.raises(InvalidInputError,
                       match="Missing input with specific name - Required input: b"):
        ovms.predict({"a": A, "c": B}, "add")
