"""The numpy JSON-array scanner against the general path (json.loads + numpy), value for value."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from ovserve.server.codecs import jsonfast

F32 = np.dtype(np.float32)


def general(text: bytes, dtype: np.dtype[np.generic] = F32) -> np.ndarray:
    """What the general path (and OVMS, static_cast<float>(double)) gives."""
    return np.asarray(json.loads(text), dtype=np.float64).astype(dtype)


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _midpoints(rng: np.random.Generator) -> list[float]:
    """Decimals exactly halfway between two float32 values: the rounding-boundary cases."""
    low = rng.random(64, dtype=np.float32)
    high = np.nextafter(low, np.float32(2))
    return [float(v) for v in (low.astype(np.float64) + high.astype(np.float64)) / 2]


RNG = np.random.default_rng(11)
VALUES = {
    "uniform float32 reprs": RNG.random((3, 40, 40), dtype=np.float32).tolist(),
    "normal, negatives": (RNG.standard_normal((20, 30)) * 1000).tolist(),
    "integers into float": RNG.integers(-10**6, 10**6, (25, 40)).tolist(),
    "some exponents": [[1e-5, -2.5e-7, 3e20, 1.5e-40, 4e-30, -6e-3, 7e38] + [0.25] * 60],
    "float64 reprs": RNG.standard_normal((4, 50)).tolist(),
    "short decimals": [[0.5, 1.25, -0.125, 10.0], [100.75, 0.0, -0.0, 3.0]],
    "long integer parts": [[123456789.5, -98765.4321, 1e15, 42.0]],
    "rounding boundaries": [_midpoints(RNG) + RNG.random(600, dtype=np.float32).tolist()],
    "5-d": RNG.random((2, 2, 2, 3, 7), dtype=np.float32).tolist(),
    "1-d": RNG.random(500, dtype=np.float32).tolist(),
    "single": [[[0.3]]],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(VALUES), ids=list(VALUES))
def test_values_equal_the_general_path(name: str, dtype: type) -> None:
    text = compact(VALUES[name])
    got = jsonfast.parse(text, np.dtype(dtype))
    assert got is not None, "a well-formed numeric array must be handled"
    with np.errstate(over="ignore"):
        assert same(got, general(text, np.dtype(dtype)))


@pytest.mark.parametrize(
    "text",
    [
        b"[[1,2],[3]]",  # ragged
        b"[[1,2],[3,4,5]]",
        b"[[1],[[2]]]",
        b"[[1],2]",
        b"[1,[2]]",
        b"[]",
        b"[[]]",
        b"[[1],[]]",
        b"[1,,2]",
        b"[,1]",
        b"[1,]",
        b"[[1][2]]",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[-]",
        b"[-.5]",
        b"[1.2.3]",
        b"[1-2]",
        b"[--1]",
        b"[1e]",
        b"[1e+]",
        b"[+1]",
        b"[true]",
        b"[null]",
        b'["1"]',
        b"[1x]",
        b"[1/2]",
        b"[1 2]",  # whitespace: left to the general path
        b"[1, 2]",
        b"[[1,2],[3,4]",  # never closed
        b"[1]]",
        b"[NaN]",
        b"[Infinity]",
        b"[0x10]",
        b"[" + b"1" * 41 + b"]",  # longer than MAX_TOKEN
    ],
    ids=lambda v: v.decode(errors="replace")[:24],
)
def test_anything_unusual_goes_to_the_general_path(text: bytes) -> None:
    assert jsonfast.parse(text, F32) is None


@pytest.mark.parametrize(
    "dtype", [np.float64, np.int32, np.uint8, np.bool_], ids=["fp64", "i32", "u8", "bool"]
)
def test_only_float32_and_float16_targets(dtype: type) -> None:
    assert jsonfast.parse(b"[[1,2],[3,4]]", np.dtype(dtype)) is None


def test_spans_are_found_and_replaced_by_placeholders() -> None:
    a = RNG.random((40, 40), dtype=np.float32).tolist()
    b = RNG.random((30, 50), dtype=np.float32).tolist()
    body = compact({"signature_name": "x", "inputs": {"a": a, "b": b, "c": [1, 2]}})
    spans = jsonfast.find_spans(body)
    assert [span.shape for span in spans] == [(40, 40), (30, 50)]
    for span in spans:
        assert body[span.start : span.end] == span.text()
    marker = jsonfast.new_marker()
    doc = orjson.loads(jsonfast.substitute(body, spans, marker))
    assert doc["signature_name"] == "x"
    assert doc["inputs"]["a"] == marker + "0"
    assert doc["inputs"]["b"] == marker + "1"
    assert doc["inputs"]["c"] == [1, 2]
    assert same(spans[0].values(F32), np.asarray(a, np.float32))  # type: ignore[arg-type]
    assert same(spans[1].values(F32), np.asarray(b, np.float32))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": [1, 2]}',  # too small
        b'{"x": "' + b"1," * 4000 + b'"}',  # inside a string: no brackets
        compact({"x": [{"b64": "AAAA"}] * 800}),
        json.dumps({"x": [0.5] * 2000}).encode(),  # whitespace
    ],
    ids=["small", "string", "b64 objects", "whitespace"],
)
def test_no_spans(body: bytes) -> None:
    assert jsonfast.find_spans(body) == []


@pytest.mark.parametrize(
    "value",
    [[[True, False] * 900], [["a"] * 900, ["b"] * 900], [[1, None] * 900]],
    ids=["booleans", "strings", "nulls"],
)
def test_spans_of_non_numbers_have_no_values(value: object) -> None:
    for span in jsonfast.find_spans(compact({"x": value})):
        assert span.values(F32) is None


def test_a_span_inside_a_string_breaks_the_rest_of_the_document() -> None:
    """Such a placeholder can never parse: the caller then parses the whole body instead."""
    text = compact(RNG.random((30, 30), dtype=np.float32).tolist())
    body = b'{"note": "' + text + b'", "inputs": [1]}'
    spans = jsonfast.find_spans(body)
    assert len(spans) == 1
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(jsonfast.substitute(body, spans, jsonfast.new_marker()))


def test_placeholders_cannot_be_guessed() -> None:
    assert jsonfast.new_marker() != jsonfast.new_marker()
    assert jsonfast.new_marker().startswith("\x00")


def test_first_number_type() -> None:
    ints = jsonfast.find_spans(compact([[1, 2.5] * 2000]))[0]
    floats = jsonfast.find_spans(compact([[1.5, 2] * 2000]))[0]
    assert ints.first_is_integer() and not floats.first_is_integer()
