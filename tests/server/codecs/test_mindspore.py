"""MindSpore-style codec: URL parsing, instance decoding, batching, replies and every error text."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from ovserve.server.codecs import mindspore as ms
from ovserve.server.codecs import mindspore_batch as msb
from ovserve.server.errors import InvalidInput, InvalidJson, RequestTooLarge
from ovserve.server.types import Dim, Signature, TensorSpec

DYN = Dim.dynamic()
LIMIT = 1 << 20


def spec(name: str, precision: str, *dims: int, layout: str = "") -> TensorSpec:
    shape = tuple(DYN if d < 0 else Dim.static(d) for d in dims)
    return TensorSpec(name, precision, shape, layout)


def sig(*inputs: TensorSpec) -> Signature:
    return Signature(tuple(inputs), (spec("y", "FP32", -1),))


def decode(doc: Any) -> list[dict[str, ms.MsValue]]:
    return ms.decode_instances(orjson.dumps(doc), LIMIT)


def b64(array: np.ndarray) -> str:
    return base64.b64encode(array.tobytes()).decode()


# ---------------------------------------------------------------------------------- URL


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("/model/add:predict", ms.MsTarget("add", None, "predict")),
        ("/model/add/version/2:predict", ms.MsTarget("add", 2, "predict")),
        ("/model/add/version/0:predict", ms.MsTarget("add", 0, "predict")),
        ("/version/0/model/add:add_common", ms.MsTarget("add", 0, "add_common")),
        ("/model/add/version/3abc:predict", ms.MsTarget("add", 3, "predict")),
        ("/model/add/version/4294967294:predict", ms.MsTarget("add", 4294967294, "predict")),
        ("/model/a.b-c:predict?x=1", ms.MsTarget("a.b-c", None, "predict?x=1")),
    ],
)
def test_parse_url(uri: str, target: ms.MsTarget) -> None:
    assert ms.parse_url(uri) == target


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("/x/:add_common", "please check url, the keyword:[model] must contain."),
        ("/model/", "please check url, the keyword:[model] must contain."),
        ("/model/add", "please check url, the keyword:[service method] must contain."),
        ("/model/add:", "please check url, the keyword:[service method] must contain."),
        ("/model/add/version/abc:predict",
         "please check url, the keyword:[version] value invalid, request version number abc"),
        ("/model/add/version/:predict",
         "please check url, the keyword:[version] value invalid, request version number "),
        ("/model/add/version/-1:predict",
         "please check url, version number range failed, request version number -1"),
        ("/model/add/version/4294967295:predict",
         "please check url, version number range failed, request version number 4294967295"),
        ("/model/add/version/99999999999999999999999:predict",
         "please check url, version number range failed, request version number "
         "99999999999999999999999"),
    ],
)
def test_parse_url_errors(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ms.parse_url(uri)
    assert str(caught.value) == message


def test_dispatch_texts() -> None:
    plain = ms.MsTarget("add", None, "predict")
    versioned = ms.MsTarget("add", 2, "add_common")
    assert ms.servable_unavailable(plain) == (
        "Request servable(add) method(predict) , servable is not available")
    assert ms.servable_unavailable(ms.MsTarget("add", 0, "predict")) == (
        "Request servable(add) method(predict) , servable is not available")
    assert ms.servable_unavailable(versioned) == (
        "Request servable(add) method(add_common)  version(2) , servable is not available")
    assert ms.method_unavailable(versioned) == (
        "Request servable(add) method(add_common)  version(2) , method is not available")
    ms.check_method(plain)
    with pytest.raises(InvalidInput) as caught:
        ms.check_method(ms.MsTarget("add", None, "add_common"))
    assert str(caught.value) == (
        "Request servable(add) method(add_common) , method is not available")


# ---------------------------------------------------------------------------------- request


def test_scalars_and_arrays_decode_with_mindspore_types() -> None:
    (inst,) = decode({"instances": [{"i": 3, "f": 1.5, "b": True, "s": "txt",
                                     "big": 2**32 + 5, "a": [[1, 2], [3, 4]],
                                     "fa": [0.5, 1.5], "ba": [[True], [False]], "sa": [["x"]]}]})
    assert isinstance(inst["i"], np.ndarray) and inst["i"].dtype == np.int32 and inst["i"] == 3
    assert isinstance(inst["f"], np.ndarray) and inst["f"].dtype == np.float32
    assert isinstance(inst["b"], np.ndarray) and inst["b"].dtype == np.bool_
    assert inst["s"] == "txt"
    assert isinstance(inst["big"], np.ndarray) and int(inst["big"]) == 5  # wraps like int32
    a = inst["a"]
    assert isinstance(a, np.ndarray) and a.dtype == np.int32 and a.tolist() == [[1, 2], [3, 4]]
    fa = inst["fa"]
    assert isinstance(fa, np.ndarray) and fa.dtype == np.float32 and fa.tolist() == [0.5, 1.5]
    ba = inst["ba"]
    assert isinstance(ba, np.ndarray) and ba.shape == (2, 1) and ba.dtype == np.bool_
    sa = inst["sa"]
    assert isinstance(sa, np.ndarray) and sa.shape == (1, 1) and sa.tolist() == [["x"]]


def test_single_object_is_one_instance() -> None:
    (inst,) = decode({"instances": {"x": 1}})
    assert list(inst) == ["x"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"b64": b64(np.array([1, 2], np.float32)), "type": "fp32", "shape": [2]},
         np.array([1, 2], np.float32)),
        ({"b64": b64(np.array([[1], [2]], np.float16)), "type": "float16", "shape": [2, 1]},
         np.array([[1], [2]], np.float16)),
        ({"b64": b64(np.array(7, np.int64)), "type": "int64"}, np.array(7, np.int64)),
        ({"b64": b64(np.array([1, 0], np.uint8)), "type": "bool", "shape": [2]},
         np.array([True, False])),
        ({"b64": "", "type": "uint16", "shape": [2, 0]}, np.zeros((2, 0), np.uint16)),
        ({"b64": b64(np.array([1.5])), "type": "fp64", "shape": [1]}, np.array([1.5])),
    ],
)
def test_typed_objects(obj: dict[str, Any], expected: np.ndarray) -> None:
    (inst,) = decode({"instances": [{"x": obj}]})
    value = inst["x"]
    assert isinstance(value, np.ndarray)
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_array_equal(value, expected)


def test_typed_text_objects() -> None:
    (inst,) = decode({"instances": [{"b": {"b64": "AP8="}, "s": {"b64": "aGk=", "type": "str"},
                                     "one": {"b64": "aGk=", "type": "bytes", "shape": [1]},
                                     "arr": [{"b64": "aGk="}]}]})
    assert inst["b"] == b"\x00\xff"
    assert inst["s"] == "hi"
    one, arr = inst["one"], inst["arr"]
    assert isinstance(one, np.ndarray) and one.shape == (1,) and one.tolist() == [b"hi"]
    assert isinstance(arr, np.ndarray) and arr.tolist() == [b"hi"]


P = ms.PREFIX


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "http message invalid"),
        (b"{}", P + "key 'instances' expects to exist once, but actually 0 times"),
        (b"[1]", P + "key 'instances' expects to exist once, but actually 0 times"),
        (b'{"inputs": {"x": 1}}',
         P + "key 'instances' expects to exist once, but actually 0 times"),
        (b'{"instances": 1}', P + "instances no key mode is not supported"),
        (b'{"instances": [1, 2]}', P + "instances no key mode is not supported"),
        (b'{"instances": []}', P + "instances value is array type, but no value"),
        (b'{"instances": {}}', P + "json object, value is empty"),
        (b'{"instances": [{"x": 1}, 2]}', P + "json array, instance is not object type"),
        (b'{"instances": [{"x": 1}, {}]}', P + "json array, instance is object type, but no value"),
        (b'{"instances": [{"": 1}]}', P + "string key is empty"),
        (b'{"instances": [{"x": null}]}', P + "json value is null, it is not supported"),
        (b'{"instances": [{"x": []}]}', P + "json array, shape is empty"),
        (b'{"instances": [{"x": [[]]}]}', P + "json array, data type is unknown"),
        (b'{"instances": [{"x": [null]}]}', P + "json array, data type is unknown"),
        (b'{"instances": [{"x": [{"b64": "", "type": "x"}]}]}',
         P + "json array, data type is unknown"),
        (b'{"instances": [{"x": [[1, 2], [3]]}]}',
         P + "invalid json array: json size is 1, the dim 1 expected to be 2"),
        (b'{"instances": [{"x": [[1, 2], 3]}]}', P + "invalid json array: json type is not array"),
        (b'{"instances": [{"x": [[1, 2], [3, [4]]]}]}',
         P + "json array, data should be number, bool, string or bytes"),
        (b'{"instances": [{"x": [1, null]}]}',
         P + "json array, data should be number, bool, string or bytes"),
        (b'{"instances": [{"x": [1, 2.0]}]}', P + "json array, elements type is not equal"),
        (b'{"instances": [{"x": [1.0, 2]}]}', P + "json array, elements type is not equal"),
        (b'{"instances": [{"x": [1, true]}]}', P + "json array, elements type is not equal"),
        (b'{"instances": [{"x": [true, "a"]}]}', P + "json array, elements type is not equal"),
        (b'{"instances": [{"x": ["a", "b"]}]}',
         P + "json array, string or bytes type only support one item"),
        (b'{"instances": [{"x": [{"b64": "AAAA"}, 1]}]}',
         P + "json array, string or bytes type only support one item"),
        (b'{"instances": [{"x": [{"b64": "AAAAAAAA", "type": "fp32"}]}]}',
         P + "json array, item is object type, object only support string or bytes type"),
        (b'{"instances": [{"x": [[{"b64": "AAAA"}], [1]]}]}',
         P + "json array, string or bytes type only support one item"),
        (b'{"instances": [{"x": [{"b64": 5}]}]}',
         P + "get scalar data failed, type is string, but json is not string type"),
        (b'{"instances": [{"x": {}}]}', P + "json object, value is empty"),
        (b'{"instances": [{"x": {"b64": "", "type": "str", "shape": [], "k": 1}}]}',
         P + "json object, items size is more than 3, only support specified "
             "['b64', 'type', 'shape']"),
        (b'{"instances": [{"x": {"b64": "", "kind": "str"}}]}',
         P + "json object, key is not ['b64', 'type', 'shape'], fail key:kind"),
        (b'{"instances": [{"x": {"b64": "", "type": 1}}]}',
         P + "json object, key is 'type', value should be string type"),
        (b'{"instances": [{"x": {"b64": "", "type": "fp8"}}]}',
         P + "json object, specified type:'fp8' is illegal"),
        (b'{"instances": [{"x": {"b64": "", "shape": 2}}]}',
         P + "json object, key is 'shape', value should be array type"),
        (b'{"instances": [{"x": {"b64": "", "shape": [-1]}}]}',
         P + "json object, key is 'shape', array value should be unsigned integer"),
        (b'{"instances": [{"x": {"b64": "", "shape": [1.0]}}]}',
         P + "json object, key is 'shape', array value should be unsigned integer"),
        (b'{"instances": [{"x": {"b64": "", "type": "int8", "shape": [0, 1]}}]}',
         P + "json object, key is 'shape', invalid shape value [0,1]"),
        (b'{"instances": [{"x": {"type": "fp32", "shape": [1]}}]}',
         P + "json object, 'b64' should be specified only one time"),
        (b'{"instances": [{"x": {"b64": 12}}]}',
         P + "get scalar data failed, type is string, but json is not string type"),
        (b'{"instances": [{"x": {"b64": "AAA"}}]}', P + "'AAA' is illegal b64 encode string"),
        (b'{"instances": [{"x": {"b64": "AA*A"}}]}', P + "'AA*A' is illegal b64 encode string"),
        (b'{"instances": [{"x": {"b64": "AAAA", "type": "fp16", "shape": [2]}}]}',
         P + "size is not matched, decode base64 size:3; Given info: type:float16; type size:2; "
             "element nums:2"),
        (b'{"instances": [{"x": {"b64": "AAAA", "type": "str", "shape": [2]}}]}',
         P + "json object, only support scalar when data type is string or bytes, please check "
             "'type' or 'shape'"),
    ],
)
def test_decode_errors(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ms.decode_instances(payload, LIMIT)
    assert str(caught.value) == message


def test_body_limit() -> None:
    payload = b'{"instances": [{"x": 1}]}'
    assert len(ms.decode_instances(payload, len(payload))) == 1
    with pytest.raises(RequestTooLarge) as caught:
        ms.decode_instances(payload, len(payload) - 1)
    assert str(caught.value) == f"http message is bigger than {len(payload) - 1}"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{x", "parse error at line 1, column 2: syntax error while parsing value - invalid "
                "literal; last read: 'x'"),
        (b'{\n "a": tru}', "parse error at line 2, column 10: syntax error while parsing value - "
                          "invalid literal; last read: 'tru}'"),
        (b"[1,", "parse error at line 1, column 4: syntax error while parsing value - unexpected "
                 "end of input; expected '[', '{', or a literal"),
    ],
)
def test_illegal_json(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidJson) as caught:
        ms.decode_instances(payload, LIMIT)
    assert str(caught.value) == "Illegal JSON format.[json.exception.parse_error.101] " + message


def test_error_order_follows_sorted_keys() -> None:
    with pytest.raises(InvalidInput, match="json value is null"):
        decode({"instances": [{"b": [], "a": None}]})


# ---------------------------------------------------------------------------------- batching


def plan(instances: list[dict[str, Any]], signature: Signature) -> msb.MsPlan:
    return msb.batch_instances(decode({"instances": instances}), signature,
                              servable="add", method="predict")


ADD = sig(spec("x1", "FP32", -1, 2), spec("x2", "FP32", -1, 2))


def test_instances_stack_into_one_batch() -> None:
    result = plan([{"x1": [1.0, 2.0], "x2": [3.0, 4.0]},
                   {"x1": [[5.0, 6.0]], "x2": [7.0, 8.0]}], ADD)
    assert result.errors == {}
    (batch,) = result.batches
    assert batch.indices == (0, 1) and batch.batched and batch.rows == 2
    np.testing.assert_array_equal(batch.inputs["x1"], [[1, 2], [5, 6]])
    np.testing.assert_array_equal(batch.inputs["x2"], [[3, 4], [7, 8]])


def test_a_bad_instance_does_not_spoil_the_others() -> None:
    result = plan([{"x1": [1.0, 2.0], "x2": [3.0, 4.0]},
                   {"x1": [1.0, 2.0, 3.0], "x2": [3.0, 4.0]},
                   {"x1": [1, 2], "x2": [3.0, 4.0]},
                   {"x1": [1.0, 2.0], "x2": [5.0, 6.0]}], ADD)
    assert result.errors == {
        1: "Given model input 0 size 12 not match the size 8 defined in model",
        2: "Given model input 0 data type kMSI_Int32 not match the data type kMSI_Float32 "
           "defined in model",
    }
    (batch,) = result.batches
    assert batch.indices == (0, 3)
    np.testing.assert_array_equal(batch.inputs["x2"], [[3, 4], [5, 6]])


def test_missing_input_fails_the_request() -> None:
    with pytest.raises(InvalidInput) as caught:
        plan([{"x1": [1.0, 2.0], "x2": [3.0, 4.0]}, {"x1": [1.0, 2.0], "x3": [1.0, 2.0]}], ADD)
    assert str(caught.value) == (
        "Cannot find input x2 in instance input , servable add, method predict")


def test_static_batch_is_chunked_and_padded() -> None:
    signature = sig(spec("x", "FP32", 2, 3))
    result = plan([{"x": [float(i)] * 3} for i in range(3)], signature)
    first, second = result.batches
    assert (first.indices, first.rows, second.indices, second.rows) == ((0, 1), 2, (2,), 2)
    np.testing.assert_array_equal(second.inputs["x"], [[2, 2, 2], [2, 2, 2]])


def test_batch_range_bounds_chunks() -> None:
    signature = sig(TensorSpec("x", "I32", (Dim(2, 3), Dim.static(1))))
    result = plan([{"x": [i]} for i in range(4)], signature)
    assert [(b.indices, b.rows) for b in result.batches] == [((0, 1, 2), 3), ((3,), 2)]


def test_static_leading_one_runs_each_instance_as_a_batch_of_one() -> None:
    signature = sig(spec("x", "FP32", 1, 3))
    result = plan([{"x": [1.0, 2.0, 3.0]}, {"x": [[4.0, 5.0, 6.0]]}], signature)
    assert [(b.indices, b.batched, b.inputs["x"].shape) for b in result.batches] == [
        ((0,), True, (1, 3)), ((1,), True, (1, 3))]


def test_model_without_batch_dimension_gets_whole_instances() -> None:
    scalar = sig(TensorSpec("x", "FP32", ()), TensorSpec("k", "I32", None))
    result = plan([{"x": 2.5, "k": [[1, 2]]}, {"x": [2.5], "k": 1}], scalar)
    assert [(b.indices, b.batched, b.inputs["x"].shape, b.inputs["k"].shape)
            for b in result.batches] == [((0,), False, (), (1, 2)), ((1,), False, (), ())]
    outputs = [{"y": np.array([[1.0, 2.0]], np.float32)}, {"y": np.array(3.0, np.float32)}]
    assert orjson.loads(ms.encode_instances(msb.collect_results(result, outputs))) == {
        "instances": [{"y": [[1.0, 2.0]]}, {"y": 3.0}]}


def test_dynamic_instance_shapes_are_grouped() -> None:
    signature = sig(spec("x", "FP32", -1, -1))
    result = plan([{"x": [1.0]}, {"x": [1.0, 2.0]}, {"x": [3.0]}], signature)
    assert [(b.indices, b.inputs["x"].shape) for b in result.batches] == [
        ((0, 2), (2, 1)), ((1,), (1, 2))]


def test_dynamic_shape_mismatch_text() -> None:
    signature = sig(spec("x", "FP32", -1, -1, 2))
    result = plan([{"x": [1.0, 2.0, 3.0]}], signature)
    assert result.errors == {
        0: "Given model input 0 shape [3] not match the shape [-1, 2] defined in model"}
    assert result.batches == []


def test_string_and_typed_inputs() -> None:
    signature = sig(spec("s", "STRING", -1), spec("n", "I64", -1, 2))
    n = {"b64": b64(np.array([1, 2], np.int64)), "type": "int64", "shape": [2]}
    result = plan([{"s": "héllo", "n": n}, {"s": {"b64": "AP8="}, "n": n},
                   {"s": 5, "n": n}, {"s": "x", "n": [1, 2]}], signature)
    assert result.errors == {
        2: "Given model input 0 data type kMSI_Int32 not match the data type kMSI_Bytes "
           "defined in model",
        3: "Given model input 1 size 8 not match the size 16 defined in model",
    }
    (batch,) = result.batches
    assert batch.inputs["s"].tolist() == ["héllo".encode(), b"\x00\xff"]
    assert batch.inputs["n"].dtype == np.int64 and batch.inputs["n"].shape == (2, 2)


def test_text_value_for_a_numeric_input() -> None:
    result = plan([{"x1": "a", "x2": [1.0, 2.0]}], ADD)
    assert result.errors == {0: "Given model input 0 data type kMSI_String not match the data "
                                "type kMSI_Float32 defined in model"}


# ---------------------------------------------------------------------------------- reply


def test_results_are_split_per_instance_and_padding_dropped() -> None:
    signature = sig(spec("x", "FP32", 2, 1))
    result = plan([{"x": [1.0]}, {"x": [2.0]}, {"x": [3]}, {"x": [4.0]}], signature)
    outputs = [{"y": b.inputs["x"] * 10, "n": np.array([b.rows, 0], np.int64)[: b.rows]}
               for b in result.batches]
    results = msb.collect_results(result, outputs)
    assert isinstance(results[2], str)
    assert orjson.loads(ms.encode_instances(results)) == {"instances": [
        {"n": 2, "y": [10.0]}, {"n": 0, "y": [20.0]},
        {"error_msg": "Given model input 0 data type kMSI_Int32 not match the data type "
                      "kMSI_Float32 defined in model"},
        {"n": 2, "y": [40.0]},
    ]}


def test_failed_inference_answers_its_instances() -> None:
    result = plan([{"x1": [1.0, 2.0], "x2": [3.0, 4.0]}], ADD)
    results = msb.collect_results(result, ["Serving Error: inference failed"])
    assert ms.encode_instances(results) == b'{"error_msg":"Serving Error: inference failed"}'


def test_common_error_becomes_the_whole_body() -> None:
    assert ms.encode_instances(["e", "e"]) == b'{"error_msg":"e"}'
    assert orjson.loads(ms.encode_instances(["e", "f"])) == {
        "instances": [{"error_msg": "e"}, {"error_msg": "f"}]}


def test_output_json_types() -> None:
    results: list[ms.MsResult] = [{
        "i": np.array([[1, 2]], np.int64), "u": np.array(7, np.uint8),
        "f": np.array(0.1, np.float32),
        "h": np.array([0.5], np.float16), "b": np.array([True, False]),
        "t": np.array([b"text", b"\xff"], dtype=object), "s": np.array("one"),
        "raw": np.array([b"ok"], dtype=object), "big": np.array([1.0, 2.0], ">f8"),
    }]
    assert ms.encode_instances(results, {"raw": "bytes"}) == (
        b'{"instances":[{"b":[true,false],"big":[1.0,2.0],"f":0.1,"h":[0.5],"i":[[1,2]],'
        b'"raw":[{"b64":"b2s="}],"s":"one","t":["text",{"b64":"/w=="}],"u":7}]}'
    )
    forced = ms.encode_instances([{"t": np.array([b"\xff"], dtype=object)}], {"t": "str"})
    assert orjson.loads(forced) == {"instances": [{"t": ["\ufffd"]}]}


def test_encode_error() -> None:
    assert ms.encode_error('bad "x"') == b'{"error_msg":"bad \\"x\\""}'
