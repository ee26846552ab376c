"""Large JSON bodies: their big numeric arrays go straight into numpy, without Python floats.

Python's JSON parsers (orjson included) make one Python object per number, and turning the
nested lists into numpy walks them all again: for the 2.9 MB ``[1,3,224,224]`` body that is
~9 ms in orjson and ~4 ms in ``numpy.asarray``. :func:`load` hands the body to the C scanner
``_numjson`` (``_numjson.c``, built with the package) first: it takes out every object member
whose value is a rectangular nested array of numbers (``"data": [...]``, ``"x": [[...]]``,
``"instances": [[[...]]]``) into an int64 (all integers) or float64 array, leaving a marker in a
small skeleton of the body, which orjson then parses; the markers are replaced by the arrays.

It changes no answer: the numbers are exactly what ``json.loads`` gives (integers exact, floats
correctly rounded; an integer-first list holding fractions, which Python decoders type by its
first number, is left to them); anything the scanner does not fully understand stays in the
skeleton as text for the regular path to decode or to word as an error; a skeleton that orjson
refuses makes :func:`load` return ``None``, and the caller parses the whole body as before.

The extension is optional at run time: when it was not built (no C compiler where the package
was installed), :data:`AVAILABLE` is false and :func:`load` always returns ``None``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

try:
    from . import _numjson  # type: ignore[attr-defined]
except ImportError:  # built without a C compiler: the regular path decodes everything
    _numjson = None

AVAILABLE = _numjson is not None
"""Whether the C scanner was built and loaded."""

MIN_BODY = 64 * 1024
"""Smaller bodies are left to orjson entirely: the scan would not pay for itself."""
MAX_DEPTH = 100
"""Deeper bodies are left to orjson entirely (OVMS's rapidjson nesting limit)."""
MIN_COUNT = 1024
"""Arrays of fewer numbers stay in the skeleton: orjson is as fast on those."""

_POW_MIN, _POW_MAX = -348, 347


def _power_table() -> bytes:
    """10^q for q in [-348, 347] as 128-bit mantissas rounded down (top bit set), each as the
    low then the high 64 bits, native byte order: the table the Eisel-Lemire algorithm needs."""
    words: list[int] = []
    for q in range(_POW_MIN, _POW_MAX + 1):
        if q >= 0:
            value = 10**q
            size = value.bit_length()
            mantissa = value >> (size - 128) if size > 128 else value << (128 - size)
        else:
            divisor = 10**-q
            mantissa = (1 << (divisor.bit_length() + 127)) // divisor
        words += (mantissa & (2**64 - 1), mantissa >> 64)
    return np.array(words, dtype=np.uint64).tobytes()


if _numjson is not None:
    _numjson.set_powers(_power_table())


def load(body: bytes | bytearray, max_depth: int = MAX_DEPTH) -> tuple[Any, int, bytes] | None:
    """``(document, arrays, skeleton)``: ``body`` parsed, its big numeric arrays as numpy arrays.

    ``arrays`` is how many arrays were taken out (each an ``int64`` or ``float64`` ndarray in
    the document where its list was) and ``skeleton`` the text orjson parsed (the body with
    markers ``"\\u0000<k>"`` instead of those arrays). ``None``: parse ``body`` the regular way
    (a body under :data:`MIN_BODY`, no big array, no extension, or something only the regular
    parser may judge, such as invalid JSON or nesting deeper than ``max_depth``).
    """
    if _numjson is None or len(body) < MIN_BODY:
        return None
    found = _numjson.extract(body, MIN_COUNT, max_depth)
    if found is None:
        return None
    skeleton, parts = found
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    arrays = [
        np.frombuffer(data, dtype=np.int64 if integer else np.float64).reshape(shape)
        for data, shape, integer in parts
    ]
    return _place(doc, arrays), len(arrays), skeleton


def _place(doc: Any, arrays: list[np.ndarray]) -> Any:
    """``doc`` with every marker string replaced by its array (markers are member values).

    Stops as soon as every array is placed, so a typical skeleton costs a few steps.
    """
    left = len(arrays)
    stack = [doc]
    while stack and left:
        node = stack.pop()
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in children:
            if isinstance(value, str):
                if value[:1] == "\x00":
                    node[key] = arrays[int(value[1:])]
                    left -= 1
            elif isinstance(value, dict | list):
                stack.append(value)
    return doc
