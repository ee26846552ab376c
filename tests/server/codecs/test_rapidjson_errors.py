"""OVMS's invalid-JSON texts (rapidjson's wording, byte offsets), the same in the TFS v1 and the
KServe v2 codec: OVMS parses both with the same rapidjson call."""

from __future__ import annotations

import pytest

from ovserve.server.codecs import kserve_v2, tfs
from ovserve.server.errors import InvalidJson
from ovserve.server.types import Dim, Signature, TensorSpec

X = TensorSpec("x", "FP32", (Dim.dynamic(),))
SIGNATURE = Signature((X,), (X,))

CASES = [
    (b"", "The document is empty.", 0),
    (b"{not json", "Missing a name for object member.", 1),
    (b'{"inputs": [1 2]}', "Missing a comma or ']' after an array element.", 14),
    (b'{"inputs": 1 "x": 2}', "Missing a comma or '}' after an object member.", 13),
    (b'{"inputs" [1]}', "Missing a colon after a name of object member.", 10),
    (b'{"inputs": [1]} 7', "The document root must not be followed by other values.", 16),
    (b'{"inputs": [1,]}', "Invalid value.", 14),
    (b'{"inputs": [1], }', "Missing a name for object member.", 16),
    (b'{"inputs": tru}', "Invalid value.", 14),
    (b'{"inputs": [1.]}', "Miss fraction part in number.", 14),
    (b'{"inputs": [1e]}', "Miss exponent in number.", 14),
    (b'{"inputs": "a\\qb"}', "Invalid escape character in string.", 13),
    # cut short: what the prefix leaves open decides, at the end of the body
    (b'{"inputs": [1,', "Invalid value.", 14),
    (b'{"inputs": [1, 2', "Missing a comma or ']' after an array element.", 16),
    (b'{"inputs": "ab', "Missing a closing quotation mark in string.", 14),
    (b'{"inputs"', "Missing a colon after a name of object member.", 9),
    # offsets count bytes, not characters (the 'é' is two)
    ('{"é": 1, x}'.encode(), "Missing a name for object member.", 10),
]


@pytest.mark.parametrize(("body", "text", "offset"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_both_json_dialects_word_invalid_json_as_ovms(body: bytes, text: str, offset: int) -> None:
    expected = f"The file is not valid json - Error: {text} Offset: {offset}"
    with pytest.raises(InvalidJson) as v1:
        tfs.decode_predict(body, SIGNATURE)
    with pytest.raises(InvalidJson) as v2:
        kserve_v2.decode_infer(body, None, SIGNATURE)
    assert str(v1.value) == expected
    assert str(v2.value) == expected
