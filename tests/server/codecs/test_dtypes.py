"""The precision tables: every wire's name for every OpenVINO precision (wire-compat §1.7)."""

from __future__ import annotations

import numpy as np
import pytest

from ovserve.server.codecs import dtypes
from ovserve.server.types import PRECISION_TO_NUMPY

ROWS = [
    # precision, TF, KServe, MindSpore, numpy, binary size
    ("FP32", "DT_FLOAT", "FP32", "float32", np.float32, 4),
    ("FP64", "DT_DOUBLE", "FP64", "float64", np.float64, 8),
    ("FP16", "DT_HALF", "FP16", "float16", np.float16, 2),
    ("BF16", "DT_INVALID", "BF16", None, np.uint16, 2),
    ("I8", "DT_INT8", "INT8", "int8", np.int8, 1),
    ("I16", "DT_INT16", "INT16", "int16", np.int16, 2),
    ("I32", "DT_INT32", "INT32", "int32", np.int32, 4),
    ("I64", "DT_INT64", "INT64", "int64", np.int64, 8),
    ("U8", "DT_UINT8", "UINT8", "uint8", np.uint8, 1),
    ("U16", "DT_UINT16", "UINT16", "uint16", np.uint16, 2),
    ("U32", "DT_UINT32", "UINT32", "uint32", np.uint32, 4),
    ("U64", "DT_UINT64", "UINT64", "uint64", np.uint64, 8),
    ("BOOL", "DT_BOOL", "BOOL", "bool", np.bool_, 1),
    ("STRING", "DT_STRING", "BYTES", "bytes", object, 0),
]


@pytest.mark.parametrize(("precision", "tf", "kserve", "mindspore", "numpy", "size"), ROWS,
                         ids=[r[0] for r in ROWS])
def test_every_name_of_a_precision(
    precision: str, tf: str, kserve: str, mindspore: str | None, numpy: type, size: int
) -> None:
    assert dtypes.tf_name(precision) == tf
    assert dtypes.kserve_name(precision) == kserve
    assert dtypes.mindspore_name(precision) == mindspore
    assert dtypes.numpy_dtype(precision) == np.dtype(numpy)
    assert dtypes.kserve_itemsize(kserve) == size
    assert dtypes.precision_from_kserve(kserve) == precision
    if tf != "DT_INVALID":
        assert dtypes.precision_from_tf(tf) == precision
    if mindspore is not None:
        assert dtypes.precision_from_mindspore(mindspore) == precision


def test_table_covers_every_precision_the_types_module_knows() -> None:
    assert set(PRECISION_TO_NUMPY) | {"BF16"} == set(dtypes.BY_PRECISION)
    for precision, numpy in PRECISION_TO_NUMPY.items():
        assert dtypes.numpy_dtype(precision) == numpy


@pytest.mark.parametrize(
    ("alias", "precision"),
    [("fp16", "FP16"), ("fp32", "FP32"), ("fp64", "FP64"), ("str", "STRING"), ("bytes", "STRING")],
    ids=lambda v: str(v),
)
def test_mindspore_aliases(alias: str, precision: str) -> None:
    assert dtypes.precision_from_mindspore(alias) == precision


@pytest.mark.parametrize(
    ("dtype", "precision"),
    [
        (np.dtype(np.float32), "FP32"),
        (np.dtype(np.int64), "I64"),
        (np.dtype(np.uint16), "U16"),
        (np.dtype(np.bool_), "BOOL"),
        (np.dtype(object), "STRING"),
        (np.dtype("S3"), "STRING"),
        (np.dtype("U3"), "STRING"),
        (np.dtype(np.complex64), None),
    ],
    ids=lambda v: str(v),
)
def test_precision_from_numpy(dtype: np.dtype[np.generic], precision: str | None) -> None:
    assert dtypes.precision_from_numpy(dtype) == precision


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (dtypes.tf_name, "NOPE"),
        (dtypes.kserve_name, "NOPE"),
        (dtypes.precision_from_tf, "DT_INVALID"),
        (dtypes.precision_from_kserve, "FLOAT"),
        (dtypes.kserve_itemsize, "FLOAT"),
        (dtypes.mindspore_name, "NOPE"),
        (dtypes.precision_from_mindspore, "half"),
        (dtypes.numpy_dtype, "NOPE"),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_unknown_names(call: object, name: str) -> None:
    result = call(name)  # type: ignore[operator]
    assert result in (None, "DT_INVALID")
