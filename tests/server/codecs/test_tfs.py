"""The TFS v1 codec, table by table: predict bodies, OVMS's error texts, responses, statuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import orjson
import pytest

from ovserve.server import errors
from ovserve.server.codecs import tfs
from ovserve.server.types import Dim, Signature, State, TensorSpec, VersionStatus


def spec(name: str, precision: str, shape: tuple[int, ...] | None, layout: str = "") -> TensorSpec:
    dims = None if shape is None else tuple(
        Dim.static(d) if d >= 0 else Dim.dynamic() for d in shape
    )
    return TensorSpec(name, precision, dims, layout)


def signature(*inputs: TensorSpec) -> Signature:
    return Signature(inputs, (spec("out", "FP32", (-1,)),))


ADD = signature(spec("a", "FP32", (-1, 2, 2)), spec("b", "FP32", (-1, 2, 2)))
ONE = signature(spec("x", "FP32", (-1, 3)))
IMAGE = signature(spec("image", "FP32", (-1, 4, 6, 3), "NHWC"))


def sig_of(precision: str) -> Signature:
    return signature(spec("x", precision, (-1, -1)))


def body(doc: Any) -> bytes:
    return doc if isinstance(doc, bytes) else json.dumps(doc).encode()


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


# ----------------------------------------------------------------------------- decode: success

DECODED = [
    ("column named", {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[5, 6], [7, 8.5]]]}}, ADD,
     {"a": ("float32", [[[1, 2], [3, 4]]]), "b": ("float32", [[[5, 6], [7, 8.5]]])}, False),
    ("row named", {"instances": [{"a": [[1, 2], [3, 4]], "b": [[5, 6], [7, 8]]},
                                 {"a": [[0, 0], [0, 1]], "b": [[1, 1], [1, 1]]}]}, ADD,
     {"a": ("float32", [[[1, 2], [3, 4]], [[0, 0], [0, 1]]]),
      "b": ("float32", [[[5, 6], [7, 8]], [[1, 1], [1, 1]]])}, True),
    ("row unnamed", {"instances": [[1, 2, 3], [4, 5, 6]]}, ONE,
     {"x": ("float32", [[1, 2, 3], [4, 5, 6]])}, True),
    ("row unnamed numbers", {"instances": [1, 2, 3]}, ONE, {"x": ("float32", [1, 2, 3])}, True),
    ("column unnamed", {"inputs": [[1, 2, 3]]}, ONE, {"x": ("float32", [[1, 2, 3]])}, False),
    ("column scalar", {"inputs": 7.5}, ONE, {"x": ("float32", 7.5)}, False),
    ("column named scalar", {"inputs": {"x": 2}}, ONE, {"x": ("float32", 2)}, False),
    ("signature_name ignored", {"signature_name": "nope", "inputs": {"x": [[1, 2, 3]]}}, ONE,
     {"x": ("float32", [[1, 2, 3]])}, False),
    ("floats truncate into I32", {"inputs": {"x": [[1.9, -1.9, 2]]}}, sig_of("I32"),
     {"x": ("int32", [[1, -1, 2]])}, False),
    ("integers wrap into I8", {"inputs": {"x": [[300, -129, 5]]}}, sig_of("I8"),
     {"x": ("int8", [[44, 127, 5]])}, False),
    ("negative into U8", {"inputs": {"x": [[-1, 256]]}}, sig_of("U8"),
     {"x": ("uint8", [[255, 0]])}, False),
    ("FP16", {"inputs": {"x": [[0.5, 65504, 1e-3]]}}, sig_of("FP16"),
     {"x": ("float16", [[0.5, 65504, 1e-3]])}, False),
    ("FP64 keeps doubles", {"inputs": {"x": [[0.1, 1e300]]}}, sig_of("FP64"),
     {"x": ("float64", [[0.1, 1e300]])}, False),
    ("I64 big", {"inputs": {"x": [[9007199254740993, -5]]}}, sig_of("I64"),
     {"x": ("int64", [[9007199254740993, -5]])}, False),
    ("U64 above int64", {"inputs": {"x": [[18446744073709551615]]}}, sig_of("U64"),
     {"x": ("uint64", [[18446744073709551615]])}, False),
    ("unknown name, integers", {"inputs": {"x": [[1, 2, 3]], "extra": [[1, 2]]}}, ONE,
     {"x": ("float32", [[1, 2, 3]]), "extra": ("int32", [[1, 2]])}, False),
    ("unknown name, floats", {"inputs": {"other": [[1.5, 2]]}}, ONE,
     {"other": ("float32", [[1.5, 2]])}, False),
    ("a number per named instance", {"instances": [{"x": 1}, {"x": 2.5}]},
     signature(spec("x", "FP32", (-1,))), {"x": ("float32", [1, 2.5])}, True),
    ("quotes in keys and values", {"signature_name": 'a "q"', "inputs": {'x"': [[1.5]]}},
     ONE, {'x"': ("float32", [[1.5]])}, False),
]


@pytest.mark.parametrize(("doc", "sig", "expected", "row"), [d[1:] for d in DECODED],
                         ids=[d[0] for d in DECODED])
def test_decode(doc: Any, sig: Signature, expected: dict[str, tuple[str, Any]], row: bool) -> None:
    request = tfs.decode_predict(body(doc), sig)
    assert request.row is row
    assert list(request.inputs) == list(expected)
    for name, (dtype, values) in expected.items():
        array = request.inputs[name]
        assert array.dtype == np.dtype(dtype), name
        assert np.array_equal(array, np.asarray(values, dtype=dtype)), name


BYTES = [
    ("row named b64", {"instances": [{"image": b64(b"\x89PNG one")}, {"image": b64(b"two")}]},
     IMAGE, "image", [b"\x89PNG one", b"two"]),
    ("column b64 list", {"inputs": {"image": [b64(b"one"), b64(b"two")]}}, IMAGE, "image",
     [b"one", b"two"]),
    ("row unnamed b64", {"instances": [b64(b"one")]}, IMAGE, "image", [b"one"]),
    ("b64 without padding", {"inputs": {"image": [{"b64": "b25l"}, {"b64": "dHc"}]}}, IMAGE,
     "image", [b"one", b"tw"]),
    ("strings into U8", {"inputs": {"x": ["abc", "de"]}}, sig_of("U8"), "x", [b"abc", b"de"]),
    ("strings into STRING", {"instances": ["zażółć", "b"]}, signature(spec("x", "STRING", (-1,))),
     "x", ["zażółć".encode(), b"b"]),
    ("b64 into STRING", {"inputs": {"x": [[b64(b"\x00\xff")]]}},
     signature(spec("x", "STRING", (-1, -1))), "x", [[b"\x00\xff"]]),
]


@pytest.mark.parametrize(("doc", "sig", "name", "expected"), [b[1:] for b in BYTES],
                         ids=[b[0] for b in BYTES])
def test_decode_bytes(doc: Any, sig: Signature, name: str, expected: list[Any]) -> None:
    array = tfs.decode_predict(body(doc), sig).inputs[name]
    assert array.dtype == object
    assert array.tolist() == expected


def test_without_a_signature_unnamed_tensors_get_a_name() -> None:
    request = tfs.decode_predict(body({"instances": [[0.5, 1], [2, 3]]}))
    assert list(request.inputs) == [tfs.UNNAMED_INPUT]
    assert request.inputs[tfs.UNNAMED_INPUT].dtype == np.float32


# ------------------------------------------------------------------------------ decode: errors

JSON = "The file is not valid json - Error:"
BAD = [
    # (id, body, signature, error class, exact message)
    ("both keys", {"instances": [[1]], "inputs": [[1]]}, ONE, errors.InvalidInput,
     tfs.UNKNOWN_ORDER),
    ("neither key", {"signature_name": "x"}, ONE, errors.InvalidInput, tfs.UNKNOWN_ORDER),
    ("body is an array", [1], ONE, errors.InvalidInput, tfs.BODY_NOT_OBJECT),
    ("body is a number", 5, ONE, errors.InvalidInput, tfs.BODY_NOT_OBJECT),
    ("instances not array", {"instances": "x"}, ONE, errors.InvalidInput, tfs.INSTANCES_NOT_ARRAY),
    ("instances object", {"instances": {"x": [1]}}, ONE, errors.InvalidInput,
     tfs.INSTANCES_NOT_ARRAY),
    ("instances empty", {"instances": []}, ONE, errors.InvalidInput, tfs.NO_INSTANCES),
    ("named then not", {"instances": [{"a": [[1, 2], [3, 4]]}, 5]}, ADD, errors.InvalidInput,
     tfs.NAMED_NOT_OBJECT),
    ("instances of booleans", {"instances": [True]}, ONE, errors.InvalidInput,
     tfs.NOT_NAMED_OR_NONAMED),
    ("instances of nulls", {"instances": [None]}, ONE, errors.InvalidInput,
     tfs.NOT_NAMED_OR_NONAMED),
    ("unnamed, two inputs", {"instances": [[1, 2]]}, ADD, errors.InvalidInput, tfs.NOT_ONE_INPUT),
    ("column unnamed, two inputs", {"inputs": [[1, 2]]}, ADD, errors.InvalidInput,
     tfs.NOT_ONE_INPUT),
    ("batch sizes differ", {"instances": [{"a": [[1, 2], [3, 4]]},
                                          {"a": [[1, 2], [3, 4]], "b": [[1, 2], [3, 4]]}]},
     ADD, errors.InvalidInput, tfs.BATCH_DIFFERS),
    ("empty instance", {"instances": [{}]}, ADD, errors.InvalidInput, tfs.BAD_INSTANCE),
    ("instance shapes differ", {"instances": [{"x": [1, 2, 3]}, {"x": [1, 2]}]}, ONE,
     errors.InvalidInput, tfs.BAD_INSTANCE),
    ("ragged instance", {"instances": [{"x": [[1, 2], [3]]}]}, ONE, errors.InvalidInput,
     tfs.BAD_INSTANCE),
    ("ragged unnamed", {"instances": [[1, 2], [3]]}, ONE, errors.InvalidInput, tfs.BAD_INSTANCE),
    ("mixed levels", {"instances": [[1, 2], 3]}, ONE, errors.InvalidInput, tfs.BAD_INSTANCE),
    ("boolean in instance", {"instances": [{"x": [1, True, 3]}]}, ONE, errors.InvalidInput,
     tfs.BAD_INSTANCE),
    ("null in instance", {"instances": [{"x": [1, None, 3]}]}, ONE, errors.InvalidInput,
     tfs.BAD_INSTANCE),
    ("instance value null", {"instances": [{"x": None}]}, ONE, errors.InvalidInput,
     tfs.BAD_INSTANCE),
    ("bad b64 in instance", {"instances": [{"image": {"b64": "!!!"}}]}, IMAGE,
     errors.InvalidInput, tfs.BAD_INSTANCE),
    ("inputs a string", {"inputs": "x"}, ONE, errors.InvalidInput, tfs.INPUTS_NOT_OBJECT),
    ("inputs a boolean", {"inputs": True}, ONE, errors.InvalidInput, tfs.INPUTS_NOT_OBJECT),
    ("inputs null", {"inputs": None}, ONE, errors.InvalidInput, tfs.INPUTS_NOT_OBJECT),
    ("inputs empty", {"inputs": {}}, ONE, errors.InvalidInput, tfs.NO_INPUTS),
    ("ragged input", {"inputs": {"x": [[1, 2], [3]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("deeper ragged", {"inputs": {"x": [[[1], [2]], [[3], 4]]}}, ONE, errors.InvalidInput,
     tfs.BAD_INPUT),
    ("empty input", {"inputs": {"x": []}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("empty inner", {"inputs": {"x": [[]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("all booleans", {"inputs": {"x": [[True, False, True]]}}, ONE, errors.InvalidInput,
     tfs.BAD_INPUT),
    ("a boolean", {"inputs": {"x": [[1.5, False, 2]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("a string into FP32", {"inputs": {"x": [["1.5"]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("string and number", {"inputs": {"x": ["a", 1]}}, sig_of("U8"), errors.InvalidInput,
     tfs.BAD_INPUT),
    ("a number into STRING", {"inputs": {"x": [1]}}, signature(spec("x", "STRING", (-1,))),
     errors.InvalidInput, tfs.BAD_INPUT),
    ("numbers into BOOL", {"inputs": {"x": [[1, 0]]}}, sig_of("BOOL"), errors.InvalidInput,
     tfs.BAD_INPUT),
    ("an object", {"inputs": {"x": [{"a": 1}]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("an empty object", {"inputs": {"x": [[1, {}]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("an empty list", {"inputs": {"x": [[1, []]]}}, ONE, errors.InvalidInput, tfs.BAD_INPUT),
    ("b64 with more keys", {"inputs": {"image": [{"b64": "AAAA", "x": 1}]}}, IMAGE,
     errors.InvalidInput, tfs.BAD_INPUT),
    ("bad b64", {"inputs": {"image": [{"b64": "a$b="}]}}, IMAGE, errors.InvalidInput,
     tfs.BAD_INPUT),
    ("invalid json", b"{not json", ONE, errors.InvalidJson,
     "The file is not valid json - Error: Missing a name for object member. Offset: 1"),
    ("empty body", b"", ONE, errors.InvalidJson,
     "The file is not valid json - Error: The document is empty. Offset: 0"),
    ("missing comma", b'{"inputs": [1 2]}', ONE, errors.InvalidJson,
     f"{JSON} Missing a comma or ']' after an array element. Offset: 14"),
    ("missing object comma", b'{"inputs": 1 "x": 2}', ONE, errors.InvalidJson,
     f"{JSON} Missing a comma or '}}' after an object member. Offset: 13"),
    ("missing colon", b'{"inputs" 1}', ONE, errors.InvalidJson,
     f"{JSON} Missing a colon after a name of object member. Offset: 10"),
    ("trailing data", b'{"inputs": 1} x', ONE, errors.InvalidJson,
     "The file is not valid json - Error: The document root must not be followed by other values. "
     "Offset: 14"),
    ("NaN", b'{"inputs": [NaN]}', ONE, errors.InvalidJson,
     "The file is not valid json - Error: Invalid value. Offset: 12"),
    ("trailing comma in array", b'{"inputs": [1,]}', ONE, errors.InvalidJson,
     "The file is not valid json - Error: Invalid value. Offset: 14"),
    ("trailing comma in object", b'{"inputs": 1,}', ONE, errors.InvalidJson,
     "The file is not valid json - Error: Missing a name for object member. Offset: 13"),
    ("bad escape", b'{"inputs": ["\\q"]}', ONE, errors.InvalidJson,
     "The file is not valid json - Error: Invalid escape character in string. Offset: 13"),
    ("too deep", b'{"inputs": {"x": ' + b"[" * 150 + b"1" + b"]" * 150 + b"}}", ONE,
     errors.InvalidJson, "JSON nesting depth exceeds the allowed limit"),
    ("far too deep", b'{"inputs": {"x": ' + b"[" * 5000 + b"1" + b"]" * 5000 + b"}}", ONE,
     errors.InvalidJson, "JSON nesting depth exceeds the allowed limit"),
]


@pytest.mark.parametrize(("doc", "sig", "kind", "message"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_decode_errors(
    doc: Any, sig: Signature, kind: type[errors.ServingError], message: str
) -> None:
    with pytest.raises(kind) as caught:
        tfs.decode_predict(body(doc), sig)
    assert type(caught.value) is kind
    assert caught.value.message == message


# ------------------------------------------------------------- the plain column fast path

MIXED = signature(spec("a", "FP32", (-1, 2)), spec("i", "I32", (-1, 2)))
PLAIN_COLUMNS = [
    # (id, document, signature, whether the fast path takes it)
    ("floats", {"inputs": {"a": [[1.5, 2], [3, 4.25]], "b": [[[0.1, 0.2], [0.3, 0.4]]]}}, ADD, True),
    ("integers into FP32", {"inputs": {"a": [[1, 2], [3, 16777217]]}},
     signature(spec("a", "FP32", (-1, 2))), True),
    ("FP16 and FP64", {"inputs": {"h": [[1e5, -2.5]], "d": [[1e300, 0.1]]}},
     signature(spec("h", "FP16", (-1, 2)), spec("d", "FP64", (-1, 2))), True),
    ("overflow to inf", {"inputs": {"a": [[1e300, -1e300]]}}, signature(spec("a", "FP32", (-1, 2))),
     True),
    ("other keys beside inputs", {"signature_name": "serving_default", "inputs": {"x": [[1, 2, 3]]}},
     ONE, True),
    ("an integer input", {"inputs": {"a": [[1, 2]], "i": [[3, 4]]}}, MIXED, False),
    ("an unknown input", {"inputs": {"zz": [[1, 2, 3]]}}, ONE, False),
    ("a boolean", {"inputs": {"x": [[1.5, False, 2]]}}, ONE, False),
    ("a string", {"inputs": {"x": [["1.5", 2, 3]]}}, ONE, False),
    ("ragged", {"inputs": {"x": [[1, 2, 3], [4, 5]]}}, ONE, False),
    ("empty", {"inputs": {"x": []}}, ONE, False),
    ("a scalar", {"inputs": {"x": 2}}, ONE, False),
    ("beyond 64 bits (orjson reads a float)", {"inputs": {"x": [[2**70, 1, 2]]}}, ONE, True),
    ("a nested object", {"inputs": {"x": [[1, {"a": 1}, 2]]}}, ONE, False),
    ("no inputs", {"inputs": {}}, ONE, False),
]


@pytest.mark.parametrize(("doc", "sig", "fast"), [c[1:] for c in PLAIN_COLUMNS],
                         ids=[c[0] for c in PLAIN_COLUMNS])
def test_plain_columns_decode_as_the_general_path_does(
    doc: Any, sig: Signature, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[bool] = []
    plain = tfs._plain_columns

    def spy(*args: Any) -> Any:
        result = plain(*args)
        taken.append(result is not None)
        return result

    def decode() -> Any:
        try:
            return tfs.decode_predict(body(doc), sig).inputs
        except errors.ServingError as exc:
            return type(exc), exc.message

    monkeypatch.setattr(tfs, "_plain_columns", spy)
    with_fast_path = decode()
    assert taken == [fast]
    monkeypatch.setattr(tfs, "_plain_columns", lambda *args: None)
    general = decode()
    if isinstance(general, tuple):
        assert with_fast_path == general
        return
    assert list(with_fast_path) == list(general)
    for name, array in general.items():
        assert with_fast_path[name].dtype == array.dtype
        assert with_fast_path[name].shape == array.shape
        assert with_fast_path[name].tobytes() == array.tobytes()


# ------------------------------------------------------------------- larger tensors, every layout

RNG = np.random.default_rng(3)
LARGE = RNG.random((1, 3, 32, 32), dtype=np.float32)
LAYOUTS = [
    ("row unnamed", {"instances": LARGE.tolist()}, signature(spec("x", "FP32", (-1, 3, 32, 32))),
     {"x": LARGE}),
    ("row named", {"instances": [{"x": LARGE[0].tolist()}, {"x": (LARGE[0] * -2).tolist()}]},
     signature(spec("x", "FP32", (-1, 3, 32, 32))), {"x": np.stack([LARGE[0], LARGE[0] * -2])}),
    ("column named, two", {"inputs": {"a": LARGE[0, 0].tolist(), "b": LARGE[0, 1].tolist()}},
     signature(spec("a", "FP32", (32, 32)), spec("b", "FP16", (32, 32))),
     {"a": LARGE[0, 0], "b": LARGE[0, 1].astype(np.float16)}),
    ("column unnamed", {"inputs": LARGE.tolist()}, signature(spec("x", "FP32", (1, 3, 32, 32))),
     {"x": LARGE}),
    ("float64 input", {"inputs": {"x": LARGE[0, 0].tolist()}},
     signature(spec("x", "FP64", (32, 32))), {"x": LARGE[0, 0].astype(np.float64)}),
    ("no signature", {"instances": LARGE.tolist()}, None, {tfs.UNNAMED_INPUT: LARGE}),
]


@pytest.mark.parametrize(("doc", "sig", "want"), [x[1:] for x in LAYOUTS],
                         ids=[x[0] for x in LAYOUTS])
def test_larger_tensors_decode_exactly(doc: Any, sig: Signature | None,
                                       want: dict[str, np.ndarray]) -> None:
    decoded = tfs.decode_predict(json.dumps(doc, separators=(",", ":")).encode(), sig).inputs
    assert list(decoded) == list(want)
    for name, array in want.items():
        assert decoded[name].dtype == array.dtype
        assert decoded[name].tobytes() == array.tobytes()


def test_the_bench_body_decodes_like_the_stdlib_baseline() -> None:
    x = RNG.random((1, 3, 224, 224), dtype=np.float32)
    data = json.dumps({"instances": x.tolist()}, separators=(",", ":")).encode()
    decoded = tfs.decode_predict(data).inputs[tfs.UNNAMED_INPUT]
    baseline = np.asarray(json.loads(data)["instances"], dtype=np.float32)
    assert decoded.shape == (1, 3, 224, 224)
    assert np.array_equal(decoded, baseline) and np.array_equal(decoded, x)


# ---------------------------------------------------------------------------- predict responses

F32 = np.float32
ENCODED = [
    ("row, one output", {"y": np.array([[1.5, 2], [3, 4]], F32)}, True,
     b'{"predictions":[[1.5,2.0],[3.0,4.0]]}'),
    ("row, several outputs", {"double": np.array([[2, 4], [6, 8]], F32),
                              "total": np.array([3, 7], np.int64)}, True,
     b'{"predictions":[{"double":[2.0,4.0],"total":3},{"double":[6.0,8.0],"total":7}]}'),
    ("column, one output", {"y": np.array([[1, 2]], np.int32)}, False, b'{"outputs":[[1,2]]}'),
    ("column, several", {"a": np.array([1], np.uint8), "b": np.array(2.5, F32)}, False,
     b'{"outputs":{"a":[1],"b":2.5}}'),
    ("column scalar", {"y": np.array(7, np.int64)}, False, b'{"outputs":7}'),
    ("shortest float32", {"y": np.array([0.1, 1e-7, 0.33333334, 3, 16777216, -0.0], F32)}, False,
     b'{"outputs":[0.1,1e-7,0.33333334,3.0,16777216.0,-0.0]}'),
    ("float64", {"y": np.array([0.1, 1 / 3], np.float64)}, False,
     b'{"outputs":[0.1,0.3333333333333333]}'),
    ("float16", {"y": np.array([0.5, 65504], np.float16)}, False, b'{"outputs":[0.5,65504.0]}'),
    ("non-finite", {"y": np.array([[np.nan, np.inf], [-np.inf, 0.25]], F32)}, False,
     b'{"outputs":[[NaN,Infinity],[-Infinity,0.25]]}'),
    ("non-finite rows", {"y": np.array([[np.nan], [1]], F32), "z": np.array([1, 2], np.int8)},
     True, b'{"predictions":[{"y":[NaN],"z":1},{"y":[1.0],"z":2}]}'),
    ("integers", {"y": np.array([-128, 2**63 - 1], np.int64),
                  "u": np.array([2**64 - 1], np.uint64)}, False,
     b'{"outputs":{"y":[-128,9223372036854775807],"u":[18446744073709551615]}}'),
    ("booleans", {"y": np.array([True, False])}, False, b'{"outputs":[true,false]}'),
    ("bytes outputs", {"text_bytes": np.array([b"\x00\xff", b"ok"], object)}, False,
     b'{"outputs":[{"b64":"AP8="},{"b64":"b2s="}]}'),
    ("string outputs", {"text": np.array([[b"caf\xc3\xa9", "x"]], object)}, True,
     b'{"predictions":[["caf\xc3\xa9","x"]]}'),
    ("strings and numbers", {"label": np.array([b"cat", b"dog"], object),
                             "score": np.array([0.75, 0.25], F32)}, True,
     b'{"predictions":[{"label":"cat","score":0.75},{"label":"dog","score":0.25}]}'),
    ("non-contiguous", {"y": np.arange(6, dtype=np.int32).reshape(2, 3).T}, False,
     b'{"outputs":[[0,3],[1,4],[2,5]]}'),
]


@pytest.mark.parametrize(("outputs", "row", "expected"), [e[1:] for e in ENCODED],
                         ids=[e[0] for e in ENCODED])
def test_encode_predict(outputs: dict[str, np.ndarray], row: bool, expected: bytes) -> None:
    assert tfs.encode_predict(outputs, row) == expected


def test_float32_text_reads_back_as_the_same_float32() -> None:
    values = RNG.standard_normal(2000).astype(F32) * np.float32(1e3)
    text = tfs.encode_predict({"y": values}, row=False)
    assert np.array_equal(np.array(orjson.loads(text)["outputs"], dtype=F32), values)


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"a": np.zeros((2, 3), F32), "b": np.zeros((3,), F32)},
         "Response parsing to JSON error - Tensor name: b has inconsistent batch size: 3 "
         "expecting: 2"),
        ({"a": np.zeros((2,), F32), "b": np.array([b"x"], object)},
         "Response parsing to JSON error - Tensor name: b has inconsistent batch size: 1 "
         "expecting: 2"),
        ({"a": np.array(1.0, F32)},
         "Response parsing to JSON error - Tensor name: a has no shape information "),
    ],
    ids=["numbers", "strings", "scalar"],
)
def test_encode_predict_row_errors(outputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(errors.InferenceFailed) as caught:
        tfs.encode_predict(outputs, row=True)
    assert caught.value.message == message


# --------------------------------------------------------- status, metadata, config, errors

AVAILABLE = (
    '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "AVAILABLE",\n'
    '   "status": {\n    "error_code": "OK",\n    "error_message": "OK"\n   }\n  }\n ]\n}'
)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([VersionStatus(1, State.AVAILABLE)], AVAILABLE + "\n"),
        ([], '{\n "model_version_status": []\n}\n'),
        ([VersionStatus(1, State.END), VersionStatus(2, State.LOADING, "UNKNOWN", 'bad "xml"')],
         '{\n "model_version_status": [\n  {\n   "version": "1",\n   "state": "END",\n'
         '   "status": {\n    "error_code": "OK",\n    "error_message": "OK"\n   }\n  },\n'
         '  {\n   "version": "2",\n   "state": "LOADING",\n   "status": {\n'
         '    "error_code": "UNKNOWN",\n    "error_message": "bad \\"xml\\""\n   }\n  }\n ]\n}\n'),
    ],
    ids=["one (OVMS's test)", "none", "several, escaped"],
)
def test_encode_status(statuses: list[VersionStatus], expected: str) -> None:
    assert tfs.encode_status(statuses).decode() == expected


def test_encode_config_status_joins_models_as_ovms_does() -> None:
    one = [VersionStatus(1, State.AVAILABLE)]
    # OVMS's http_rest_api_handler tests: one model, then models plus pipelines, sorted.
    assert tfs.encode_config_status({"dummy": one}).decode() == (
        '{\n"dummy" : \n' + AVAILABLE + "\n}"
    )
    assert tfs.encode_config_status({"pipeline1Dummy": one, "dummy": one}).decode() == (
        '{\n"dummy" : \n' + AVAILABLE + ',\n"pipeline1Dummy" : \n' + AVAILABLE + "\n}"
    )
    assert tfs.encode_config_status({}) == b"{}"
    json.loads(tfs.encode_config_status({"a": one, "b": []}))


SCALARS = Signature((spec("Input_Scalar", "FP32", ()),), (spec("Output_Scalar", "I32", ()),))
SCALAR_METADATA = """{
 "modelSpec": {
  "name": "resnet",
  "signatureName": "",
  "version": "23"
 },
 "metadata": {
  "signature_def": {
   "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
   "signatureDef": {
    "serving_default": {
     "inputs": {
      "Input_Scalar": {
       "dtype": "DT_FLOAT",
       "tensorShape": {
        "dim": [],
        "unknownRank": false
       },
       "name": "Input_Scalar"
      }
     },
     "outputs": {
      "Output_Scalar": {
       "dtype": "DT_INT32",
       "tensorShape": {
        "dim": [],
        "unknownRank": false
       },
       "name": "Output_Scalar"
      }
     },
     "methodName": "",
     "defaults": {}
    }
   }
  }
 }
}
"""


def test_encode_metadata_is_byte_exact_with_ovms() -> None:
    assert tfs.encode_metadata("resnet", 23, SCALARS).decode() == SCALAR_METADATA


@pytest.mark.parametrize(
    ("tensor", "dtype", "sizes", "unknown_rank"),
    [
        (spec("b", "FP32", (1, 10)), "DT_FLOAT", ["1", "10"], False),
        (spec("a", "FP32", (-1, 2, 2)), "DT_FLOAT", ["-1", "2", "2"], False),
        (TensorSpec("r", "U8", (Dim(1, 8), Dim.static(3))), "DT_UINT8", ["-1", "3"], False),
        (spec("s", "STRING", (-1,)), "DT_STRING", ["-1"], False),
        (spec("h", "FP16", (2,)), "DT_HALF", ["2"], False),
        (spec("z", "BF16", (2,)), "DT_INVALID", ["2"], False),
        (spec("any", "FP32", None), "DT_FLOAT", [], True),
    ],
    ids=["static", "dynamic batch", "range", "string", "fp16", "bf16", "dynamic rank"],
)
def test_encode_metadata_tensors(
    tensor: TensorSpec, dtype: str, sizes: list[str], unknown_rank: bool
) -> None:
    doc = json.loads(tfs.encode_metadata("m", 2, Signature((tensor,), (tensor,))))
    sig = doc["metadata"]["signature_def"]["signatureDef"]["serving_default"]
    info = sig["inputs"][tensor.name]
    assert info == sig["outputs"][tensor.name]
    assert info["dtype"] == dtype
    assert info["name"] == tensor.name
    assert [d["size"] for d in info["tensorShape"]["dim"]] == sizes
    assert all(d["name"] == "" for d in info["tensorShape"]["dim"])
    assert info["tensorShape"]["unknownRank"] is unknown_rank
    assert doc["modelSpec"] == {"name": "m", "signatureName": "", "version": "2"}


def test_encode_metadata_keeps_the_model_order() -> None:
    doc = json.loads(tfs.encode_metadata("m", 1, ADD))
    inputs = doc["metadata"]["signature_def"]["signatureDef"]["serving_default"]["inputs"]
    assert list(inputs) == ["a", "b"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Model with requested name is not found",
         b'{"error":"Model with requested name is not found"}'),
        ('quote " and \\ and \u00e9', b'{"error":"quote \\" and \\\\ and \xc3\xa9"}'),
    ],
    ids=["plain", "escaped"],
)
def test_encode_error(message: str, expected: bytes) -> None:
    assert tfs.encode_error(message) == expected


def test_encode_reload_error_is_ovms_hand_built_body() -> None:
    assert tfs.encode_reload_error("Config file not found or cannot open.") == (
        b'{\n\t"error": "Config file not found or cannot open."\n}'
    )
    assert json.loads(tfs.encode_reload_error('a "b"')) == {"error": 'a "b"'}


# The row-format fast path (one numpy call per input) must refuse exactly what the general path
# refuses: numpy alone would turn "2", true or null inside a value into a number.
@pytest.mark.parametrize(
    "value",
    [
        [[1, "2"], [3, 4]],
        [[1, True], [3, 4]],
        [[1, None], [3, 4]],
        [[1, 2], [3]],
        [[1, 2], [3, 4, 5]],
        [[1, {"b64": "AA=="}], [3, 4]],
    ],
    ids=["string", "bool", "null", "ragged", "ragged-long", "object"],
)
def test_row_fast_path_refuses_what_ovms_refuses(value: Any) -> None:
    good = [[1.0, 2.0], [3.0, 4.0]]
    body = orjson.dumps({"instances": [{"a": good, "b": good}, {"a": value, "b": good}]})
    with pytest.raises(errors.InvalidInput) as caught:
        tfs.decode_predict(body, ADD)
    assert caught.value.message == tfs.BAD_INSTANCE


def test_row_fast_path_matches_the_general_path() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((5, 2, 2), dtype=np.float32), rng.random((5, 2, 2), dtype=np.float32)
    body = orjson.dumps({"signature_name": "serving_default",
                         "instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(5)]})
    fast = tfs.decode_predict(body, ADD)
    assert fast.row and set(fast.inputs) == {"a", "b"}
    np.testing.assert_array_equal(fast.inputs["a"], a)
    np.testing.assert_array_equal(fast.inputs["b"], b)
    assert fast.inputs["a"].dtype == np.float32
    # one instance in another key order takes the general path: the same arrays come out
    mixed = orjson.loads(body)
    mixed["instances"][2] = {"b": b[2].tolist(), "a": a[2].tolist()}
    general = tfs.decode_predict(orjson.dumps(mixed), ADD)
    np.testing.assert_array_equal(general.inputs["a"], fast.inputs["a"])
    np.testing.assert_array_equal(general.inputs["b"], fast.inputs["b"])
