"""The C scanner for large JSON bodies (``codecs/numjson.py`` + ``_numjson.c``).

Three layers: its number conversion against Python's own (``float``/``int``), what it takes out
of a body and what it leaves, and the decoders' answers with and without it (the same arrays,
bit for bit, and the same errors) for large TFS and KServe v2 bodies.
"""

from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from ovserve.server import errors
from ovserve.server.codecs import kserve_v2, numjson, tfs
from ovserve.server.types import Dim, Signature, TensorSpec


def test_the_extension_is_built() -> None:
    # The build hook (hatch_build.py) compiles it wherever a C compiler is present, as on every
    # machine this project builds on; without it large bodies silently lose their fast path.
    assert numjson.AVAILABLE, (
        "codecs/_numjson is not built: needs a C compiler; rebuild with "
        "`touch server/ovserve/server/codecs/_numjson.c && make venv`"
    )


parse = numjson._numjson.parse_float if numjson._numjson is not None else None


def python_value(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def same(got: Any, want: Any) -> bool:
    if isinstance(want, float):
        return isinstance(got, float) and struct.pack("<d", got) == struct.pack("<d", want)
    return type(got) is type(want) and got == want


EXACT = [
    "0", "-0", "0.0", "-0.0", "1", "-1", "0.1", "0.5", "1e5", "1E5", "1e+5", "1.5e-3",
    "123456789012345678", "-123456789012345678", "9007199254740993.0", "9007199254740993e0",
    "0.30000000000000004", "1.7976931348623157e308", "2.2250738585072014e-308", "5e-324",
    "4.9406564584124654e-324", "1e-400", "0.21645355224609375", "0.0041370391845703125",
    "1.00000000000000011102230246251565404236316680908203125",  # the halfway case of 1.0
    "1.0000000000000002220446049250313080847263336181640625",
    "123456789012345678901234567890.5", "0." + "0" * 40 + "123", "7." + "9" * 30,
]


@pytest.mark.parametrize("text", EXACT)
def test_numbers_are_python_s_numbers(text: str) -> None:
    assert parse is not None
    got = parse(text.encode())
    assert same(got, python_value(text)), (text, got)


@pytest.mark.parametrize(
    "text",
    ["", "-", "+1", "01", "-01.5", "00", "1.", ".5", "1e", "1.5e-", "1e+", "0x10", "1_000",
     "NaN", "Infinity", "1e400", "-1e400", "1234567890123456789", "1.5 ", " 1.5"],
)
def test_what_is_not_an_exact_json_number_is_left_as_text(text: str) -> None:
    # Invalid JSON, overflow and integers past 18 digits: the regular parser decides.
    assert parse is not None
    assert parse(text.encode()) is None


def random_texts(seed: int, count: int) -> Iterator[str]:
    rnd = random.Random(seed)
    for _ in range(count):
        bits = struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
        if math.isfinite(bits):
            yield repr(bits)
        single = struct.unpack("<f", struct.pack("<I", rnd.getrandbits(32)))[0]
        if math.isfinite(single):
            yield repr(single)
        yield repr(float(np.float32(rnd.random())))  # how clients send float32 tensors
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 22)))
        digits = digits.lstrip("0") or "0"
        fraction = "." + str(rnd.randint(0, 10 ** rnd.randint(0, 8))) if rnd.random() < 0.5 else ""
        exponent = f"e{rnd.randint(-340, 320)}" if rnd.random() < 0.6 else ""
        yield ("-" if rnd.random() < 0.5 else "") + digits + fraction + exponent


def test_random_numbers_match_python_bit_for_bit() -> None:
    assert parse is not None
    checked = 0
    for text in random_texts(seed=20261129, count=40_000):
        got = parse(text.encode())
        if got is None:  # only overflow and long integers may be left to Python
            value = python_value(text)
            assert isinstance(value, int) or math.isinf(value), text
            continue
        assert same(got, python_value(text)), (text, got)
        checked += 1
    assert checked > 100_000


# -------------------------------------------------------------------------------- extraction


def numbers(count: int, seed: int = 1) -> list[float]:
    return np.random.default_rng(seed).random(count, dtype=np.float32).tolist()


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


BIG = np.arange(3 * 40 * 40, dtype=np.float32).reshape(3, 40, 40) / 7
BIG_LIST = BIG.tolist()


def test_member_arrays_become_numpy_arrays_in_place() -> None:
    ints = np.arange(-1000, 1000).reshape(20, 100)
    doc = {"inputs": {"a": BIG_LIST, "b": ints.tolist(), "small": [1.5, 2.5]}, "id": "x"}
    loaded = numjson.load(dumps(doc), 100)
    assert loaded is not None
    got, arrays, skeleton = loaded
    assert arrays == 2
    assert b"1.5" in skeleton and b'"id":"x"' in skeleton  # the small list and the rest stay text
    assert got["inputs"]["a"].dtype == np.float64
    assert np.array_equal(got["inputs"]["a"], np.asarray(BIG_LIST))
    assert got["inputs"]["b"].dtype == np.int64 and np.array_equal(got["inputs"]["b"], ints)
    assert got["inputs"]["small"] == [1.5, 2.5] and got["id"] == "x"


def test_arrays_inside_objects_inside_lists_are_found() -> None:
    doc = {"instances": [{"x": BIG_LIST, "tag": "a"}, {"x": BIG_LIST, "tag": "b"}]}
    loaded = numjson.load(dumps(doc), 100)
    assert loaded is not None and loaded[1] == 2
    for item in loaded[0]["instances"]:
        assert isinstance(item["x"], np.ndarray) and item["x"].shape == (3, 40, 40)


def test_arrays_are_placed_wherever_their_object_sits() -> None:
    # Found by fuzzing: a list starting with a literal or a number was once skipped, leaving a
    # marker string in the document.
    doc = {"instances": [True, 1, {"x": BIG_LIST}, [None, {"y": BIG_LIST}]], "z": BIG_LIST}
    loaded = numjson.load(dumps(doc), 100)
    assert loaded is not None and loaded[1] == 3
    got = loaded[0]
    assert got["instances"][:2] == [True, 1] and got["instances"][3][0] is None
    for array in (got["instances"][2]["x"], got["instances"][3][1]["y"], got["z"]):
        assert isinstance(array, np.ndarray) and np.array_equal(array, np.asarray(BIG_LIST))


N = 5000  # numbers enough for a body over numjson.MIN_BODY
PAD = "p" * numjson.MIN_BODY

LEFT_AS_TEXT = [
    ("a string inside", {"x": [*numbers(N), "1.0"]}),
    ("a literal inside", {"x": [*numbers(N), True]}),
    ("null inside", {"x": [*numbers(N), None]}),
    ("an object inside", {"x": [*numbers(N), {"b64": "AA=="}]}),
    ("ragged", {"x": [numbers(N), numbers(N - 1)]}),
    ("an empty row", {"x": [numbers(N), []]}),
    ("integer first, then fractions", {"x": [1, *numbers(N)]}),
    ("too few numbers", {"x": numbers(1000), "pad": PAD}),
    ("not a member value", [numbers(N)]),
    ("an integer past int64", {"x": [2**63, *range(4 * N)]}),
    ("an overflowing float", {"x": [*numbers(N), 1e400]}),
]


@pytest.mark.parametrize(("doc"), [c[1] for c in LEFT_AS_TEXT], ids=[c[0] for c in LEFT_AS_TEXT])
def test_what_the_scanner_does_not_fully_understand_stays_text(doc: Any) -> None:
    text = json.dumps(doc).replace("Infinity", "1e400").encode()
    assert len(text) >= numjson.MIN_BODY
    assert numjson.load(text, 100) is None


def test_small_bodies_are_left_to_orjson() -> None:
    body = dumps({"x": numbers(2000)})
    assert len(body) < numjson.MIN_BODY
    assert numjson.load(body, 100) is None
    assert numjson.load(dumps({"x": numbers(2000), "pad": PAD}), 100) is not None


@pytest.mark.parametrize(
    "body",
    [
        b'{"name":"\\u0000","x":' + dumps(numbers(N)) + b"}",  # could pass for a marker
        b'{"x":' + dumps(numbers(N)) + b",}",  # invalid JSON: orjson words it, not us
        b'{"x":' + dumps(numbers(N)) + b"} trailing",
        b'{"x":' + dumps(numbers(N)) + b',"s":"\x00"}',  # a raw control character
        b'{"a":' * 99 + b'{"x":' + dumps([[numbers(N)]]) + b"}" * 100,  # 102 deep
    ],
    ids=["unicode NUL escape", "trailing comma", "trailing text", "raw NUL", "too deep"],
)
def test_the_whole_body_is_left_to_the_regular_parser(body: bytes) -> None:
    assert len(body) >= numjson.MIN_BODY
    assert numjson.load(body, 100) is None


# -------------------------------------------------------------------- decoders: same answers


def spec(name: str, precision: str, rank: int) -> TensorSpec:
    return TensorSpec(name, precision, tuple(Dim.dynamic() for _ in range(rank)))


def sig(precision: str = "FP32", rank: int = 4, names: tuple[str, ...] = ("x",)) -> Signature:
    return Signature(tuple(spec(n, precision, rank) for n in names), (spec("y", "FP32", 1),))


@pytest.fixture
def without_scanner(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], Any]:
    """Run a decode with numjson switched off (the regular path), restoring it afterwards."""

    def run(decode: Callable[[], Any]) -> Any:
        with monkeypatch.context() as patch:
            patch.setattr(numjson, "load", lambda body, max_depth=100: None)
            return outcome(decode)

    return run


def outcome(decode: Callable[[], Any]) -> Any:
    """Arrays as (name, dtype, shape, bytes), or the error's type and text."""
    try:
        result = decode()
    except (errors.InvalidInput, errors.InvalidJson) as exc:
        return type(exc).__name__, str(exc)
    inputs = result.inputs
    return [(k, v.dtype.str, v.shape, v.tobytes()) for k, v in sorted(inputs.items())]


def spied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many arrays each numjson.load call took out (0 for the regular path)."""
    calls: list[int] = []
    real = numjson.load

    def spy(body: bytes, max_depth: int = numjson.MAX_DEPTH) -> Any:
        loaded = real(body, max_depth)
        calls.append(0 if loaded is None else loaded[1])
        return loaded

    monkeypatch.setattr(numjson, "load", spy)
    return calls


RNG = np.random.default_rng(5)
F32 = RNG.random((1, 3, 64, 64), dtype=np.float32)
F64 = RNG.standard_normal((2, 3, 40, 40))
INTS = RNG.integers(-(2**40), 2**40, (2, 3, 40, 40))
SMALL_INTS = RNG.integers(-300, 300, (2, 3, 40, 40)) * 1001  # wraps in I8 and I16
MIXED = [float(f) if i % 2 else int(n) for i, (f, n) in enumerate(zip(F64.flat, SMALL_INTS.flat, strict=True))]
MIXED[0] = 0.5  # a fraction first: numjson takes the array (an integer first: see LEFT_AS_TEXT)
EXPONENTS = "[" + ",".join(f"{v:.6e}" for v in F64.ravel()) + "]"
NEG_ZEROS = "[" + ",".join(["-0.0", "-0", "0.0", "-0e5"] * 5000) + "]"

TFS_CASES = [
    ("row unnamed FP32", dumps({"instances": F32.tolist()}), sig(), 1),
    ("row unnamed FP16", dumps({"instances": F64.tolist()}), sig("FP16"), 1),
    ("row unnamed FP64", dumps({"instances": F64.tolist()}), sig("FP64"), 1),
    ("row named, two inputs", dumps({"instances": [{"a": F64[i].tolist(), "b": F64[i].tolist()}
                                                   for i in range(2)]}),
     sig(rank=4, names=("a", "b")), 4),
    ("row named, ragged instances", dumps({"instances": [{"x": F64[0].tolist()},
                                                         {"x": F64[1, :2].tolist()}]}), sig(), 2),
    ("column named", dumps({"inputs": {"x": F64.tolist()}}), sig(), 1),
    ("column unnamed", dumps({"inputs": F64.tolist()}), sig(), 1),
    ("integers into FP32", dumps({"inputs": {"x": INTS.tolist()}}), sig(), 1),
    ("integers wrap into I8", dumps({"inputs": {"x": SMALL_INTS.tolist()}}), sig("I8"), 1),
    ("integers into I32", dumps({"inputs": {"x": INTS.tolist()}}), sig("I32"), 1),
    ("floats truncate into I32", dumps({"inputs": {"x": (F64 * 1000).tolist()}}), sig("I32"), 1),
    ("floats into U8", dumps({"inputs": {"x": (F64 * 300).tolist()}}), sig("U8"), 1),
    ("mixed, fraction first", dumps({"inputs": {"x": MIXED}}), sig(rank=1), 1),
    ("exponent forms", b'{"inputs":{"x":' + EXPONENTS.encode() + b"}}", sig(rank=1), 1),
    ("negative zeros", b'{"inputs":{"x":' + NEG_ZEROS.encode() + b"}}", sig(rank=1), 1),
    ("numbers into BOOL", dumps({"inputs": {"x": F64.tolist()}}), sig("BOOL"), 1),
    ("numbers into STRING", dumps({"inputs": {"x": F64.tolist()}}), sig("STRING"), 1),
    ("an input the model lacks", dumps({"inputs": {"nope": F64.tolist()}}), sig(), 1),
    ("both instances and inputs", dumps({"instances": F64.tolist(), "inputs": [1]}), sig(), 1),
    ("one input for a two-input model", dumps({"instances": F64.tolist()}),
     sig(names=("a", "b")), 1),
    ("ragged", dumps({"inputs": {"x": [F64[0].tolist(), F64[1, :2].tolist()]}}), sig(), 0),
    ("a string inside", dumps({"inputs": {"x": [*F64.ravel().tolist(), "1"]}}), sig(rank=1), 0),
    ("a literal elsewhere", dumps({"inputs": {"x": F64.tolist()}, "flag": True}), sig(), 1),
    ("invalid JSON after the array", dumps({"inputs": {"x": F64.tolist()}})[:-1] + b",}", sig(), 0),
]


@pytest.mark.parametrize(
    ("body", "signature", "arrays"),
    [c[1:] for c in TFS_CASES], ids=[c[0] for c in TFS_CASES],
)
def test_tfs_decodes_large_bodies_as_without_the_scanner(
    body: bytes, signature: Signature, arrays: int, monkeypatch: pytest.MonkeyPatch,
    without_scanner: Callable[[Callable[[], Any]], Any],
) -> None:
    assert len(body) > 64 * 1024
    expected = without_scanner(lambda: tfs.decode_predict(body, signature))
    calls = spied(monkeypatch)
    assert outcome(lambda: tfs.decode_predict(body, signature)) == expected
    assert calls == [arrays]  # the scanner really took the arrays out (or really did not)


def v2_body(datatype: str, array: Any, shape: list[int]) -> bytes:
    return dumps({"id": "r", "inputs": [{"name": "x", "shape": shape, "datatype": datatype,
                                        "data": array}]})


V2_CASES = [
    ("FP32 flat", v2_body("FP32", F32.ravel().tolist(), [1, 3, 64, 64]), "FP32", 1),
    ("FP32 nested", v2_body("FP32", F32.tolist(), [1, 3, 64, 64]), "FP32", 1),
    ("FP64", v2_body("FP64", F64.ravel().tolist(), list(F64.shape)), "FP64", 1),
    ("INT32 in range", v2_body("INT32", SMALL_INTS.ravel().tolist(), list(F64.shape)), "I32", 1),
    ("INT32 out of range", v2_body("INT32", INTS.ravel().tolist(), list(F64.shape)), "I32", 1),
    ("INT8 out of range", v2_body("INT8", SMALL_INTS.ravel().tolist(), list(F64.shape)), "I8", 1),
    ("floats for INT32", v2_body("INT32", F64.ravel().tolist(), list(F64.shape)), "I32", 1),
    ("integers for FP32", v2_body("FP32", INTS.ravel().tolist(), list(F64.shape)), "FP32", 1),
    ("numbers for BYTES", v2_body("BYTES", F64.ravel().tolist(), list(F64.shape)), "STRING", 1),
    ("count differs from shape", v2_body("FP32", F64.ravel().tolist(), [1, 3, 40, 40]), "FP32", 1),
    ("ragged", v2_body("FP32", [F64[0].tolist(), F64[1, :2].tolist()], [2, 3, 40, 40]), "FP32", 0),
]


@pytest.mark.parametrize(
    ("body", "precision", "arrays"),
    [c[1:] for c in V2_CASES], ids=[c[0] for c in V2_CASES],
)
def test_kserve_v2_decodes_large_json_as_without_the_scanner(
    body: bytes, precision: str, arrays: int, monkeypatch: pytest.MonkeyPatch,
    without_scanner: Callable[[Callable[[], Any]], Any],
) -> None:
    assert len(body) > 64 * 1024
    signature = sig(precision)
    expected = without_scanner(lambda: kserve_v2.decode_infer(body, None, signature))
    calls = spied(monkeypatch)
    assert outcome(lambda: kserve_v2.decode_infer(body, None, signature)) == expected
    assert calls == [arrays]


def test_kserve_v2_binary_bodies_never_reach_the_scanner(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = F32.tobytes()
    header = dumps({"inputs": [{"name": "x", "shape": [1, 3, 64, 64], "datatype": "FP32",
                                "parameters": {"binary_data_size": len(raw)}}]})
    calls = spied(monkeypatch)
    request = kserve_v2.decode_infer(header + raw, len(header), sig())
    assert calls == [] and np.array_equal(request.inputs["x"], F32)
