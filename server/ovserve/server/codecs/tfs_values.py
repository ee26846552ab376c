"""JSON loading and tensor decoding for the TFS v1 codec (:mod:`.tfs`, its only caller).

:func:`load_json` parses a body with orjson (large bodies through :mod:`.numjson` first) and
notes whether it mentions ``true``/``false``; invalid JSON raises ``InvalidJson`` with
rapidjson's wording, as OVMS words it::

    The file is not valid json - Error: Missing a comma or ']' after an array element. Offset: 3

:func:`decode_value` turns one input's JSON value into a numpy array, like OVMS's
``TFSRestParser``: a nested list must be rectangular and non-empty at every level; numbers are
cast to the input precision as ``static_cast`` casts them; ``{"b64": "..."}`` objects and (for
U8/STRING inputs) strings become elements of an object array of ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .. import errors
from ..types import PRECISION_TO_NUMPY, TensorSpec
from . import numjson
from .rapidjson_errors import invalid_json_text

MAX_DEPTH = 100
"""Deepest nesting of arrays/objects accepted (OVMS's rapidjson limit)."""
DEPTH_ERROR = "JSON nesting depth exceeds the allowed limit"
_SMALL_BODY = 64 * 1024
_STRING_PRECISIONS = ("U8", "STRING")

@dataclass
class Spans:
    """What :func:`load_json` found out about a body, for the decoders."""

    bools: bool = True
    """Whether the body may hold ``true``/``false``: numpy takes them for 1 and 0, so lists are
    then checked for them."""


@dataclass
class Context:
    """Where values are decoded: the spans, and the error text OVMS uses there."""

    spans: Spans
    error: str


def load_json(body: bytes | bytearray) -> tuple[Any, Spans]:
    """Parse ``body``; the :class:`Spans` say what it may hold.

    A large body's big numeric arrays come back as numpy arrays (int64 or float64) where their
    lists were (:mod:`.numjson`); :func:`decode_value` takes both forms.
    """
    loaded = numjson.load(body, MAX_DEPTH)
    if loaded is not None:
        doc, _, skeleton = loaded
        return doc, _spans(skeleton)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _invalid_json(body, exc) from None
    # Nesting cannot exceed the number of brackets; counting them in a small body is cheaper
    # than walking the document.
    few = len(body) <= _SMALL_BODY and body.count(b"[") + body.count(b"{") <= MAX_DEPTH
    if not few and _depth(doc) > MAX_DEPTH:
        raise errors.InvalidJson(DEPTH_ERROR)
    return doc, _spans(body)


def _spans(body: bytes | bytearray) -> Spans:
    return Spans(bools=_mentions(body, b"true", 2) or _mentions(body, b"false", 2))


def _mentions(body: bytes | bytearray, word: bytes, pivot: int, limit: int = 256) -> bool:
    """``word in body``, found through its rare letter ``word[pivot]`` (memchr is fast)."""
    at = body.find(word[pivot : pivot + 1])
    for _ in range(limit):
        if at < 0:
            return False
        if body.startswith(word, at - pivot):
            return True
        at = body.find(word[pivot : pivot + 1], at + 1)
    return word in body


def _depth(doc: Any) -> int:
    """Nesting depth of arrays and objects.

    Arrays are followed through their first element only: tensors are rectangular, and a
    ragged one deeper elsewhere is refused anyway (as an invalid ndarray, not as too deep).
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            deepest = max(deepest, depth)
            if value:
                stack.append((value[0], depth + 1))
        if deepest > MAX_DEPTH:
            break
    return deepest


def _invalid_json(body: bytes | bytearray, exc: orjson.JSONDecodeError) -> errors.InvalidJson:
    if "depth" in str(exc.msg):
        return errors.InvalidJson(DEPTH_ERROR)
    return errors.InvalidJson(invalid_json_text(exc, body))


# ---------------------------------------------------------------------------- values -> arrays


def decode_value(value: Any, spec: TensorSpec | None, context: Context) -> np.ndarray:
    """One input's JSON value (nested list, number, b64 object, string) as a numpy array.

    ``value`` may also be an array :mod:`.numjson` took out of the body: int64 when every
    number was an integer, else float64 (its first number had a fraction or an exponent).
    """
    if isinstance(value, np.ndarray):
        return _cast(value, spec, context, value.dtype.kind == "i")
    if isinstance(value, list):
        return _from_list(value, spec, context)
    return _from_leaves([value], (), spec, context)


def _number_dtype(spec: TensorSpec | None, integer: bool) -> np.dtype[np.generic] | None:
    """The dtype numbers decode to; ``None`` if the input takes no numbers (OVMS refuses them)."""
    if spec is None:  # an input the model lacks: OVMS types it by its first number
        return np.dtype(np.int32 if integer else np.float32)
    if spec.precision in ("STRING", "BOOL", "BF16"):
        return None
    return PRECISION_TO_NUMPY.get(spec.precision)


def _from_list(value: list[Any], spec: TensorSpec | None, context: Context) -> np.ndarray:
    # numpy types the list itself: numbers (and lists of them) give a numeric array, a string or
    # an object anywhere another kind, refused below with OVMS's wording; only true/false pass
    # for numbers, hence the bools check.
    try:
        array = np.array(value)
    except (ValueError, OverflowError):  # ragged, or integers beyond 64 bits
        array = None
    if array is not None and array.dtype.kind in "iuf":
        if array.size == 0 or (context.spans.bools and _holds_bool(value)):
            raise errors.InvalidInput(context.error)
        return _cast(array, spec, context, spec is None and _first_is_integer(value))
    shape, leaves = _flatten(value, context)
    return _from_leaves(leaves, shape, spec, context)


def _first_is_integer(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, int)


def _holds_bool(value: list[Any]) -> bool:
    if value and isinstance(value[0], list):
        return any(_holds_bool(v) for v in value)
    return any(isinstance(v, bool) for v in value)


def _flatten(value: list[Any], context: Context) -> tuple[tuple[int, ...], list[Any]]:
    """Shape and leaves of a nested list; every level rectangular and non-empty."""
    shape: list[int] = []
    probe: Any = value
    while isinstance(probe, list):
        if not probe:
            raise errors.InvalidInput(context.error)
        shape.append(len(probe))
        probe = probe[0]
    leaves: list[Any] = []

    def walk(node: list[Any], level: int) -> None:
        if len(node) != shape[level]:
            raise errors.InvalidInput(context.error)
        if level + 1 == len(shape):
            if any(isinstance(leaf, list) for leaf in node):
                raise errors.InvalidInput(context.error)
            leaves.extend(node)
            return
        for child in node:
            if not isinstance(child, list):
                raise errors.InvalidInput(context.error)
            walk(child, level + 1)

    walk(value, 0)
    return tuple(shape), leaves


def _from_leaves(
    leaves: list[Any], shape: tuple[int, ...], spec: TensorSpec | None, context: Context
) -> np.ndarray:
    """Leaves all numbers -> a numeric array; all b64/strings -> an object array of bytes."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in leaves):
        numbers = [float(v) if isinstance(v, int) and abs(v) >= 2**63 else v for v in leaves]
        array = np.array(numbers).reshape(shape)
        return _cast(array, spec, context, isinstance(leaves[0], int))
    precision = spec.precision if spec is not None else None
    out = np.empty(len(leaves), dtype=object)
    for i, leaf in enumerate(_byte_leaves(leaves, precision, context)):
        out[i] = leaf
    return out.reshape(shape)


def _byte_leaves(leaves: list[Any], precision: str | None, context: Context) -> Iterator[bytes]:
    for leaf in leaves:
        if isinstance(leaf, dict) and len(leaf) == 1 and isinstance(leaf.get("b64"), str):
            yield _b64(leaf["b64"], context)
        elif isinstance(leaf, str) and (precision is None or precision in _STRING_PRECISIONS):
            yield leaf.encode()
        else:
            raise errors.InvalidInput(context.error)


def _b64(text: str, context: Context) -> bytes:
    """Standard base64; missing padding is tolerated (as absl's decoder does)."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidInput(context.error) from None


def _cast(
    array: np.ndarray, spec: TensorSpec | None, context: Context, integer: bool
) -> np.ndarray:
    """Numbers to the input's dtype the way ``static_cast`` does it (truncate, then wrap)."""
    dtype = _number_dtype(spec, integer)
    if dtype is None:
        raise errors.InvalidInput(context.error)
    with np.errstate(all="ignore"):
        if dtype.kind in "iu" and array.dtype.kind == "f":
            array = array.astype(np.int64)
        return array.astype(dtype)
