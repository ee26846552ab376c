"""KServe v2 codec: decodes, encodes and every error text, with hand-built signatures."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.http import _utils as triton_utils

from ovserve.server.codecs import kserve_v2 as v2
from ovserve.server.errors import InferenceFailed, InvalidInput, InvalidJson
from ovserve.server.types import Dim, Signature, TensorSpec

DYN = Dim.dynamic()


def spec(name: str, precision: str, *dims: int) -> TensorSpec:
    return TensorSpec(name, precision, tuple(DYN if d < 0 else Dim.static(d) for d in dims))


X = Signature((spec("x", "FP32", -1, 3),), (spec("y", "FP32", -1, 3), spec("z", "I64", -1)))


def sig(*inputs: TensorSpec) -> Signature:
    return Signature(tuple(inputs), (spec("y", "FP32", -1, 3),))


def body(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def one(datatype: str, shape: list[int], **extra: Any) -> bytes:
    return body({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, **extra}]})


def with_binary(doc: dict[str, Any], *blobs: bytes) -> tuple[bytes, int]:
    head = body(doc)
    return head + b"".join(blobs), len(head)


def strings(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


# ---------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    ("datatype", "precision", "data", "shape", "expected"),
    [
        ("FP32", "FP32", [1.5, 2, 3], [1, 3], np.array([[1.5, 2, 3]], np.float32)),
        ("FP32", "FP32", [[1.5, 2, 3], [4, 5, 6]], [2, 3],
         np.array([[1.5, 2, 3], [4, 5, 6]], np.float32)),
        ("FP64", "FP64", [0.1, 0.2], [2], np.array([0.1, 0.2])),
        ("INT64", "I64", [[2**40], [-3]], [2, 1], np.array([[2**40], [-3]], np.int64)),
        ("INT32", "I32", [1, -2], [2], np.array([1, -2], np.int32)),
        ("INT8", "I8", [-128, 127], [2], np.array([-128, 127], np.int8)),
        ("UINT8", "U8", [0, 255], [2], np.array([0, 255], np.uint8)),
        ("UINT64", "U64", [2**64 - 1], [1], np.array([2**64 - 1], np.uint64)),
        ("BOOL", "BOOL", [True, False], [2], np.array([True, False])),
        ("FP32", "FP32", [[1, 2], [3, [4]]], [4], np.array([1, 2, 3, 4], np.float32)),
        ("FP32", "FP32", [7], [], np.array(7, np.float32)),
    ],
)
def test_json_data_decodes_in_requested_datatype(
    datatype: str, precision: str, data: list[Any], shape: list[int], expected: np.ndarray
) -> None:
    signature = sig(TensorSpec("x", precision, None))
    request = v2.decode_infer(one(datatype, shape, data=data), None, signature)
    array = request.inputs["x"]
    assert array.dtype == expected.dtype
    assert array.shape == tuple(shape)
    np.testing.assert_array_equal(array, expected)
    assert request.datatypes == {"x": datatype}


def test_json_bytes_are_utf8_strings() -> None:
    request = v2.decode_infer(
        one("BYTES", [2], data=["héllo", "x"]), None, sig(spec("x", "STRING", -1))
    )
    array = request.inputs["x"]
    assert array.dtype == object
    assert array.tolist() == ["héllo".encode(), b"x"]


def test_request_fields_are_kept() -> None:
    doc = {
        "id": "req-1",
        "parameters": {"binary_data_output": True, "priority": 3, "tag": "a"},
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
        "outputs": [{"name": "z", "parameters": {"binary_data": False}}, {"name": "y"}],
    }
    request = v2.decode_infer(body(doc), None, X)
    assert request.id == "req-1"
    assert request.parameters == {"binary_data_output": True, "priority": 3, "tag": "a"}
    assert request.binary_data_output is True
    assert request.requested_outputs == ["z", "y"]
    assert request.binary_outputs == {"z": False}
    assert request.wants_binary("y") is True
    assert request.wants_binary("z") is False


def test_binary_input_is_a_view_of_the_body() -> None:
    values = np.arange(6, dtype=np.float32)
    doc = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                       "parameters": {"binary_data_size": 24}}]}
    payload, length = with_binary(doc, values.tobytes())
    array = v2.decode_infer(payload, length, X).inputs["x"]
    np.testing.assert_array_equal(array, values.reshape(2, 3))
    assert not array.flags.owndata
    assert not array.flags.writeable


def test_binary_size_is_computed_from_shape_when_not_given() -> None:
    doc = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32"}]}
    payload, length = with_binary(doc, np.array([1, 2, 3], np.float32).tobytes())
    np.testing.assert_array_equal(v2.decode_infer(payload, length, X).inputs["x"], [[1, 2, 3]])


def test_binary_and_json_inputs_mix_in_input_order() -> None:
    signature = sig(spec("a", "I64", -1), spec("b", "FP16", 2), spec("c", "STRING", -1),
                    spec("d", "BF16", 1), spec("e", "BOOL", 2))
    doc = {"inputs": [
        {"name": "a", "shape": [2], "datatype": "INT64", "parameters": {"binary_data_size": 16}},
        {"name": "b", "shape": [2], "datatype": "FP16"},
        {"name": "c", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 13}},
        {"name": "d", "shape": [1], "datatype": "BF16", "data": [],
         "parameters": {"binary_data_size": 2}},
        {"name": "e", "shape": [2], "datatype": "BOOL", "data": [True, False]},
    ]}
    payload, length = with_binary(
        doc, np.array([5, -6], np.int64).tobytes(), np.array([0.5, 2], np.float16).tobytes(),
        strings(b"ab", b"cde"), b"\x80\x3f",
    )
    inputs = v2.decode_infer(payload, length, signature).inputs
    np.testing.assert_array_equal(inputs["a"], [5, -6])
    assert inputs["b"].dtype == np.float16
    np.testing.assert_array_equal(inputs["b"], [0.5, 2])
    assert inputs["c"].tolist() == [b"ab", b"cde"]
    assert inputs["d"].dtype == np.uint16 and inputs["d"].tolist() == [0x3F80]
    assert inputs["e"].tolist() == [True, False]


def test_lone_bytes_input_takes_the_whole_rest() -> None:
    payload, length = with_binary(
        {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES"}]}, strings(b"\x00\xff")
    )
    array = v2.decode_infer(payload, length, sig(spec("x", "STRING", -1))).inputs["x"]
    assert array.tolist() == [b"\x00\xff"]


def test_zero_size_and_scalar_binary_inputs() -> None:
    signature = sig(spec("x", "I16", 1, -1))
    payload, length = with_binary(one_doc("INT16", [1, 0], binary_data_size=0))
    assert v2.decode_infer(payload, length, signature).inputs["x"].shape == (1, 0)
    payload, length = with_binary(one_doc("INT16", []), b"\x14\x15")
    array = v2.decode_infer(payload, length, sig(TensorSpec("x", "I16", None))).inputs["x"]
    assert array.shape == () and int(array) == 0x1514


def one_doc(datatype: str, shape: list[int], **parameters: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": "x", "shape": shape, "datatype": datatype}
    if parameters:
        item["parameters"] = parameters
    return {"inputs": [item]}


def test_bytes_for_an_image_input_pass_to_image_decoding() -> None:
    signature = sig(spec("x", "FP32", 1, 4, 6, 3))
    payload, length = with_binary(one_doc("BYTES", [1], binary_data_size=8), strings(b"jpeg"))
    array = v2.decode_infer(payload, length, signature).inputs["x"]
    assert array.dtype == object and array.tolist() == [b"jpeg"]


def test_tritonclient_binary_request_decodes() -> None:
    first = triton.InferInput("a", [2, 3], "FP32")
    first.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3), binary_data=True)
    second = triton.InferInput("b", [2], "BYTES")
    second.set_data_from_numpy(np.array([b"one", b"three"], dtype=object), binary_data=True)
    third = triton.InferInput("c", [1], "INT32")
    third.set_data_from_numpy(np.array([9], np.int32), binary_data=False)
    outputs = [triton.InferRequestedOutput("y", binary_data=True)]
    payload, length = triton_utils._get_inference_request(
        [first, second, third], "r7", outputs, 0, False, False, 0, None, None
    )
    signature = sig(spec("a", "FP32", -1, 3), spec("b", "STRING", -1), spec("c", "I32", 1))
    request = v2.decode_infer(payload, length, signature)
    np.testing.assert_array_equal(request.inputs["a"], np.arange(6).reshape(2, 3))
    assert request.inputs["b"].tolist() == [b"one", b"three"]
    assert request.inputs["c"].tolist() == [9]
    assert request.id == "r7" and request.wants_binary("y")


# ---------------------------------------------------------------------------------- errors

P = v2.PARSE_INPUT
I32 = sig(spec("x", "I32", -1))


@pytest.mark.parametrize(
    ("payload", "signature", "message"),
    [
        (b"[]", X, "Request body should be JSON object"),
        (b"{}", X, "Invalid JSON structure, missing inputs"),
        (b'{"inputs": []}', X, "Invalid JSON structure, missing inputs"),
        (b'{"inputs": {}}', X, P),
        (b'{"inputs": [1]}', X, P),
        (b'{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}', X, P),
        (b'{"inputs": [{"name": 1, "shape": [1], "datatype": "FP32", "data": [1]}]}', X, P),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}', X, P),
        (one("FP32", [-1, 3], data=[1, 2, 3]), X, P),
        (b'{"inputs": [{"name": "x", "shape": [1.5], "datatype": "FP32", "data": [1]}]}', X, P),
        (b'{"inputs": [{"name": "x", "shape": [true], "datatype": "FP32", "data": [1]}]}', X, P),
        (b'{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}', X, P),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": 3, "data": [1]}]}', X, P),
        (one("FP32", [1, 3], data=5), X, P),
        (b'{"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
         X, P),
        (b'{"parameters": [], "inputs": []}', X, "Could not parse request parameters"),
        (b'{"parameters": {"a": 1.5}, "inputs": []}', X, "Could not parse request parameters"),
        (one("FP32", [1, 3], data=[1, 2, 3], parameters={"p": None}), X,
         "Could not parse request parameters"),
        (b'{"outputs": {}, "inputs": []}', X, P),
        (b'{"outputs": [{"nam": "y"}], "inputs": []}', X, "Could not parse output content."),
        (b'{"outputs": ["y"], "inputs": []}', X, "Could not parse output content."),
        (b'{"outputs": [{"name": "y", "parameters": 1}], "inputs": []}', X,
         "Could not parse request parameters"),
        (body({"outputs": [{"name": "q"}], "inputs": [{"name": "x", "shape": [1, 3],
                                                        "datatype": "FP32", "data": [1, 2, 3]}]}),
         X, "Missing output with specific name - Required output: q"),
        (one("FP32", [1, 3], data=[1, 2]), X,
         "Invalid number of values in tensor proto container - Expected: 3 values; Actual: 2 "
         "values; input name: x"),
        (one("INT64", [1, 3], data=[1, 2, 3]), X,
         "Invalid input precision - Expected: FP32; Actual: INT64; input name: x"),
        (one("FP16", [1, 3], data=[1, 2, 3]), X, v2.UNSUPPORTED),
        (one("BF16", [1, 3], data=[1, 2, 3]), X, v2.UNSUPPORTED),
        (one("FOO", [1, 3], data=[1, 2, 3]), X, v2.UNSUPPORTED),
        (one("FOO", [1, 3]), X, "Invalid input precision - Expected: FP32; Actual: FOO; "
         "input name: x"),
        (one("FP32", [1, 3], data=[1, "2", 3]), X, P),
        (one("FP32", [1, 3], data=[1, None, 3]), X, P),
        (one("FP32", [1, 3], data=[True, False, True]), X, P),
        (one("INT32", [2], data=[1, 2.5]), I32, P),
        (one("INT32", [2], data=[True, False]), I32, P),
        (one("INT32", [1], data=[2**31]), I32, P),
        (one("UINT8", [1], data=[-1]), sig(spec("x", "U8", -1)), P),
        (one("INT8", [1], data=[300]), sig(spec("x", "I8", -1)), P),
        (one("BOOL", [2], data=[1, 0]), sig(spec("x", "BOOL", -1)), P),
        (one("BYTES", [2], data=["a", 1]), sig(spec("x", "STRING", -1)), P),
        (one("BYTES", [2]), sig(spec("x", "STRING", -1)), P),
        (one("BYTES", [3], data=["a", "b"]), sig(spec("x", "STRING", -1)),
         "Invalid number of values in tensor proto container - Expected: 3 values; Actual: 2 "
         "values; input name: x"),
        (one("BYTES", [1, 3]), X, P),
        (one("BYTES", [1], data=["a"]), X,
         "Invalid input precision - Expected: FP32; Actual: BYTES; input name: x"),
        (one("FP32", [1, 3]), X, v2.BUFFER_EXCEEDED),
        (body({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                          {"name": "w", "shape": [1], "datatype": "FP32", "data": [1]}]}),
         X, "Invalid number of inputs - Expected: 1; Actual: 2"),
        (body({"inputs": [{"name": "w", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
         X, "Missing input with specific name - Required input: x"),
    ],
)
def test_invalid_requests(payload: bytes, signature: Signature, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        v2.decode_infer(payload, None, signature)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("doc", "blob", "message"),
    [
        (one_doc("FP32", [1, 3], binary_data_size=12), b"\0" * 8, v2.BUFFER_EXCEEDED),
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3],
                      "parameters": {"binary_data_size": 12}}]}, b"\0" * 12, v2.BOTH_DATA),
        (one_doc("FP32", [1, 3], binary_data_size=True), b"\0" * 12, v2.BINARY_SIZE_INVALID),
        (one_doc("FP32", [1, 3], binary_data_size="12"), b"\0" * 12, v2.BINARY_SIZE_INVALID),
        (one_doc("FP32", [1, 3], binary_data_size=-1), b"\0" * 12, v2.BINARY_SIZE_INVALID),
        (one_doc("FP32", [1, 3], binary_data_size=8), b"\0" * 8,
         "Invalid content size of tensor proto - Expected: 12 bytes; Actual: 8 bytes; "
         "input name: x"),
        (one_doc("BYTES", [1], binary_data_size=6), struct.pack("<I", 5) + b"ab",
         "Invalid content size of tensor proto - Batch length metadata exceeded buffer size, "
         "buffer size: 6, batch length: 5; input name: x"),
        (one_doc("BYTES", [1], binary_data_size=8), strings(b"ab") + b"\0\0",
         "Invalid content size of tensor proto - Processed bytes: 6 do not equal to buffer "
         "size: 8; input name: x"),
        (one_doc("BYTES", [1]), strings(b"ab", b"c"),
         "Invalid number of values in tensor proto container - Expected: 1 values; Actual: 2 "
         "values; input name: x"),
    ],
)
def test_invalid_binary_requests(doc: dict[str, Any], blob: bytes, message: str) -> None:
    signature = X if doc["inputs"][0]["datatype"] == "FP32" else sig(spec("x", "STRING", -1))
    payload, length = with_binary(doc, blob)
    with pytest.raises(InvalidInput) as caught:
        v2.decode_infer(payload, length, signature)
    assert str(caught.value) == message


def test_header_length_beyond_the_body() -> None:
    payload = one("FP32", [1, 3], data=[1, 2, 3])
    with pytest.raises(InvalidInput, match=r"^Inference-Header-Content-Length header exceeds"):
        v2.decode_infer(payload, len(payload) + 1, X)


def test_header_length_cutting_the_json_is_invalid_json() -> None:
    payload = one("FP32", [1, 3], data=[1, 2, 3])
    with pytest.raises(InvalidJson):
        v2.decode_infer(payload, len(payload) - 1, X)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"", "The document is empty. Offset: 0"),
        (b"   ", "The document is empty. Offset: 3"),
        (b'{"inputs": notValid}', "Invalid value. Offset: 12"),
        (b'{"inputs": nul}', "Invalid value. Offset: 14"),
        (b'{"inputs": x}', "Invalid value. Offset: 11"),
        (b"[1 2]", "Missing a comma or ']' after an array element. Offset: 3"),
        (b'{"a":1 "b":2}', "Missing a comma or '}' after an object member. Offset: 7"),
        (b'{"a" 1}', "Missing a colon after a name of object member. Offset: 5"),
        (b"{1:2}", "Missing a name for object member. Offset: 1"),
        (b'{"a":1,}', "Missing a name for object member. Offset: 7"),
        (b"[1,]", "Invalid value. Offset: 3"),
        (b'{"a":1} x', "The document root must not be followed by other values. Offset: 8"),
    ],
)
def test_invalid_json_texts(payload: bytes, detail: str) -> None:
    with pytest.raises(InvalidJson) as caught:
        v2.decode_infer(payload, None, X)
    assert str(caught.value) == f"The file is not valid json - Error: {detail}"


# ---------------------------------------------------------------------------------- encoding


def decode_json(doc: dict[str, Any], signature: Signature = X) -> v2.V2Request:
    return v2.decode_infer(body(doc), None, signature)


REQ = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
Y = np.array([[0.1, 2.0, -3.5]], np.float32)
Z = np.array([7, -8], np.int64)


def test_json_response_matches_ovms_layout() -> None:
    request = decode_json(REQ | {"id": "abc"})
    payload, length = v2.encode_infer("m", 3, {"y": Y, "z": Z}, request)
    assert length is None
    assert payload == (
        b'{"model_name":"m","id":"abc","model_version":"3","outputs":['
        b'{"name":"y","shape":[1,3],"datatype":"FP32","data":[0.1,2.0,-3.5]},'
        b'{"name":"z","shape":[2],"datatype":"INT64","data":[7,-8]}]}'
    )


def test_no_id_no_id_field_and_requested_outputs_filter() -> None:
    request = decode_json(REQ | {"outputs": [{"name": "z"}]})
    payload, _ = v2.encode_infer("m", 1, {"y": Y, "z": Z}, request)
    doc = orjson.loads(payload)
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["z"]


def test_binary_outputs_per_output_and_request_level() -> None:
    request = decode_json(REQ | {"parameters": {"binary_data_output": True},
                                 "outputs": [{"name": "y"},
                                             {"name": "z", "parameters": {"binary_data": False}}]})
    payload, length = v2.encode_infer("m", 1, {"y": Y, "z": Z}, request)
    assert length is not None
    doc = orjson.loads(payload[:length])
    assert doc["outputs"][0] == {"name": "y", "shape": [1, 3], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 12}}
    assert doc["outputs"][1]["data"] == [7, -8]
    assert payload[length:] == Y.tobytes()


def test_binary_data_output_applies_without_an_outputs_list() -> None:
    request = decode_json(REQ | {"parameters": {"binary_data_output": True}})
    payload, length = v2.encode_infer("m", 1, {"y": Y, "z": Z}, request)
    assert length is not None and payload[length:] == Y.tobytes() + Z.tobytes()


def test_tritonclient_reads_binary_and_json_outputs() -> None:
    words = np.array([b"alpha", "βeta".encode()], dtype=object)
    flags = np.array([True, False])
    request = decode_json(REQ | {"outputs": [{"name": "y", "parameters": {"binary_data": True}},
                                             {"name": "w", "parameters": {"binary_data": True}},
                                             {"name": "f"}, {"name": "h"}]},
                          Signature(X.inputs, (spec("y", "FP32", 1, 3), spec("w", "STRING", 2),
                                               spec("f", "BOOL", 2), spec("h", "FP16", 1))))
    half = np.array([0.5], np.float16)
    payload, length = v2.encode_infer("m", 1, {"y": Y, "w": words, "f": flags, "h": half}, request)
    result = triton.InferResult.from_response_body(payload, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("y"), Y)
    assert result.as_numpy("w").tolist() == words.tolist()
    np.testing.assert_array_equal(result.as_numpy("f"), flags)
    np.testing.assert_array_equal(result.as_numpy("h"), half)


def test_bytes_outputs_in_json_are_strings() -> None:
    request = decode_json(REQ | {"outputs": [{"name": "y"}]})
    payload, _ = v2.encode_infer("m", 1, {"y": np.array([b"ok", b"\xff"], dtype=object)}, request)
    output = orjson.loads(payload)["outputs"][0]
    assert output["datatype"] == "BYTES"
    assert output["data"] == ["ok", "\ufffd"]


@pytest.mark.parametrize(
    ("array", "datatype", "data"),
    [
        (np.array([[1.0, 2.0], [3.0, 4.0]], np.float32).T, "FP32", [1.0, 3.0, 2.0, 4.0]),
        (np.array([1.0, 2.0], ">f4"), "FP32", [1.0, 2.0]),
        (np.array([np.nan, np.inf], np.float32), "FP32", [None, None]),
        (np.array([0.1]), "FP64", [0.1]),
        (np.array([True]), "BOOL", [True]),
        (np.array([255], np.uint8), "UINT8", [255]),
        (np.array(5, np.int32), "INT32", [5]),
        (np.array(["s"]), "BYTES", ["s"]),
    ],
)
def test_json_output_datatypes(array: np.ndarray, datatype: str, data: list[Any]) -> None:
    request = decode_json(REQ | {"outputs": [{"name": "y"}]})
    payload, _ = v2.encode_infer("m", 1, {"y": array}, request)
    output = orjson.loads(payload)["outputs"][0]
    assert (output["datatype"], output["data"], output["shape"]) == (
        datatype, data, list(array.shape))


def test_binary_roundtrip_of_every_numeric_datatype() -> None:
    for datatype, dtype in [("FP32", np.float32), ("FP64", np.float64), ("FP16", np.float16),
                            ("INT8", np.int8), ("INT16", np.int16), ("INT32", np.int32),
                            ("INT64", np.int64), ("UINT8", np.uint8), ("UINT16", np.uint16),
                            ("UINT32", np.uint32), ("UINT64", np.uint64), ("BOOL", np.bool_)]:
        values: np.ndarray = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
        precision = {"INT8": "I8", "INT16": "I16", "INT32": "I32", "INT64": "I64",
                     "UINT8": "U8", "UINT16": "U16", "UINT32": "U32", "UINT64": "U64"}
        signature = Signature((spec("x", precision.get(datatype, datatype), -1, 3),),
                              (spec("x", precision.get(datatype, datatype), -1, 3),))
        doc = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": datatype}],
               "outputs": [{"name": "x", "parameters": {"binary_data": True}}]}
        payload, length = with_binary(doc, values.tobytes())
        request = v2.decode_infer(payload, length, signature)
        out, out_length = v2.encode_infer("m", 1, dict(request.inputs), request)
        assert out_length is not None
        assert orjson.loads(out[:out_length])["outputs"][0]["datatype"] == datatype
        assert out[out_length:] == values.tobytes()


def test_output_missing_from_results_is_reported() -> None:
    request = decode_json(REQ | {"outputs": [{"name": "z"}]})
    with pytest.raises(InvalidInput, match=r"^Missing output with specific name - Required "
                                           r"output: z$"):
        v2.encode_infer("m", 1, {"y": Y}, request)


def test_unsupported_output_dtype() -> None:
    request = decode_json(REQ)
    with pytest.raises(InferenceFailed, match="complex64"):
        v2.encode_infer("m", 1, {"y": np.zeros(1, np.complex64)}, request)


# ---------------------------------------------------------------------------------- metadata


def test_model_metadata() -> None:
    signature = Signature(
        (TensorSpec("x", "FP32", (DYN, Dim(1, 4), Dim.static(3))), spec("s", "STRING", -1)),
        (spec("y", "I64", 1, 10),),
    )
    assert v2.encode_model_metadata("m", [1, 3], signature) == (
        b'{"name":"m","versions":["1","3"],"platform":"OpenVINO",'
        b'"inputs":[{"name":"x","datatype":"FP32","shape":[-1,-1,3]},'
        b'{"name":"s","datatype":"BYTES","shape":[-1]}],'
        b'"outputs":[{"name":"y","datatype":"INT64","shape":[1,10]}]}'
    )


def test_server_metadata_and_errors() -> None:
    assert orjson.loads(v2.encode_server_metadata("1.2.3")) == {
        "name": "ovserve", "version": "1.2.3", "extensions": ["binary_tensor_data"]}
    assert orjson.loads(v2.encode_server_metadata("2025.1", name="OpenVINO Model Server"))[
        "name"] == "OpenVINO Model Server"
    assert v2.encode_error('Model "m" not found') == b'{"error":"Model \\"m\\" not found"}'
    assert v2.kserve_datatype("I64") == "INT64" and v2.kserve_datatype("STRING") == "BYTES"
