"""KServe v2 raw binary requests (``Inference-Header-Content-Length: 0``), duplicate requested
outputs, and MindSpore-style whole instances on static models without a batch dimension."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ovserve.server.codecs import kserve_v2 as v2
from ovserve.server.codecs import mindspore_batch as msb
from ovserve.server.errors import InvalidInput
from ovserve.server.types import Dim, Signature, TensorSpec


def spec(name: str, precision: str, *dims: int, layout: str = "") -> TensorSpec:
    return TensorSpec(name, precision,
                      tuple(Dim.dynamic() if d < 0 else Dim.static(d) for d in dims), layout)


def one(*inputs: TensorSpec) -> Signature:
    return Signature(tuple(inputs), (spec("y", "FP32", -1),))


@pytest.mark.parametrize(
    ("model", "data", "shape", "dtype"),
    [
        (spec("x", "FP32", -1, 4), np.arange(8, dtype=np.float32), (2, 4), np.float32),
        (spec("x", "FP32", -1, -1), np.arange(6, dtype=np.float32), (1, 6), np.float32),
        (spec("x", "I64", 2, 3), np.arange(6, dtype=np.int64), (2, 3), np.int64),
        (spec("x", "FP16", -1), np.arange(5, dtype=np.float16), (5,), np.float16),
        (spec("x", "BOOL", 3), np.array([1, 0, 1], dtype=np.bool_), (3,), np.bool_),
        (TensorSpec("x", "U8", None), np.arange(7, dtype=np.uint8), (7,), np.uint8),
    ],
)
def test_raw_request_shapes(model: TensorSpec, data: np.ndarray, shape: tuple[int, ...],
                            dtype: type) -> None:
    request = v2.decode_raw(data.tobytes(), one(model), "m")
    array = request.inputs["x"]
    assert array.shape == shape and array.dtype == dtype
    np.testing.assert_array_equal(array.reshape(-1), data)
    assert request.binary_data_output is True
    assert request.datatypes == {"x": v2.kserve_datatype(model.precision)}


def test_raw_request_bytes_input_is_one_element() -> None:
    request = v2.decode_raw(b"\x00abc\x00", one(spec("t", "STRING", -1)), "m")
    assert request.inputs["t"].tolist() == [b"\x00abc\x00"]
    with pytest.raises(InvalidInput) as caught:
        v2.decode_raw(b"abc", one(spec("t", "STRING", 2)), "m")
    assert caught.value.message == ("Invalid content size of tensor proto - a raw BYTES request "
                                    "is one element, the input t takes 2")


def test_raw_request_of_an_empty_static_tensor() -> None:
    with pytest.raises(InvalidInput) as caught:
        v2.decode_raw(b"1234", one(spec("x", "FP32", 0, -1)), "m")
    assert caught.value.message.startswith("Invalid content size of tensor proto - Expected: a "
                                           "multiple of 0 bytes")


def test_duplicate_requested_outputs() -> None:
    sig = Signature((spec("x", "FP32", -1),), (spec("y", "FP32", -1), spec("z", "FP32", -1)))
    doc = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}],
           "outputs": [{"name": "y"}, {"name": "z"}, {"name": "y"}]}
    with pytest.raises(InvalidInput) as caught:
        v2.decode_infer(orjson.dumps(doc), None, sig)
    assert caught.value.message == ("Cannot insert more than one tensor with the same name - "
                                    "requested output: y")
    doc["outputs"] = [{"name": "y"}, {"name": "z"}]
    assert v2.decode_infer(orjson.dumps(doc), None, sig).requested_outputs == ["y", "z"]


# ------------------------------------------------------------------ MindSpore, unbatched


def plan(instances: list[dict[str, object]], signature: Signature) -> msb.MsPlan:
    decoded = [{k: np.array(v, dtype=np.float32) for k, v in i.items()} for i in instances]
    return msb.batch_instances(decoded, signature, servable="m", method="predict")


def test_whole_instance_on_a_static_model_without_batch_runs_alone() -> None:
    signature = one(spec("x", "FP32", 2, 2))
    result = plan([{"x": [[1, 2], [3, 4]]}, {"x": [5, 6]}, {"x": [7, 8, 9]}], signature)
    assert result.errors == {
        2: "Given model input 0 size 12 not match the size 8 defined in model"}
    stacked, alone = result.batches
    assert (stacked.indices, stacked.batched, stacked.rows) == ((1,), True, 2)
    assert (alone.indices, alone.batched) == ((0,), False)
    np.testing.assert_array_equal(alone.inputs["x"], [[1, 2], [3, 4]])
    results = msb.collect_results(result, [{"y": stacked.inputs["x"]}, {"y": alone.inputs["x"]}])
    assert np.asarray(results[0]["y"]).tolist() == [[1, 2], [3, 4]]  # type: ignore[index]
    assert np.asarray(results[1]["y"]).tolist() == [5, 6]  # type: ignore[index]


def test_declared_batch_dimension_keeps_stacking_only() -> None:
    signature = one(spec("x", "FP32", 2, 2, layout="NC"))
    result = plan([{"x": [[1, 2], [3, 4]]}], signature)
    assert result.errors == {0: "Given model input 0 size 16 not match the size 8 defined in model"}
    assert result.batches == []
