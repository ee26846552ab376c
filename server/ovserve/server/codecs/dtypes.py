"""Element type names on every wire, keyed by the OpenVINO/OVMS precision name.

One row per precision (wire-compat §1.7), used by every codec:

=========  ==========  ========  ===========================  ==============  =====
precision  TF DT_*     KServe    MindSpore (canonical/alias)  numpy           bytes
=========  ==========  ========  ===========================  ==============  =====
FP32       DT_FLOAT    FP32      float32 / fp32               float32         4
FP64       DT_DOUBLE   FP64      float64 / fp64               float64         8
FP16       DT_HALF     FP16      float16 / fp16               float16         2
BF16       DT_INVALID  BF16      —                            uint16 carrier  2
I8..I64    DT_INT8..   INT8..    int8 .. int64                int8 .. int64
U8..U64    DT_UINT8..  UINT8..   uint8 .. uint64              uint8 .. uint64
BOOL       DT_BOOL     BOOL      bool                         bool            1
STRING     DT_STRING   BYTES     bytes / str                  object (bytes)  —
=========  ==========  ========  ===========================  ==============  =====

Callers: :mod:`.tfs` (``DT_*`` names in model metadata), the KServe v2 codec (``datatype`` and
binary element sizes) and the MindSpore codec (``type`` of ``{"b64", "type", "shape"}`` objects).
BF16 has no numpy type: it travels as raw 16-bit words (:data:`ovserve.server.types.BF16_CARRIER`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..types import BF16_CARRIER


@dataclass(frozen=True)
class DType:
    """One element type under all of its wire names."""

    precision: str
    """OpenVINO / OVMS precision name (``FP32``, ``I64``, ``STRING`` …)."""
    tf: str
    """TensorFlow ``DataType`` enum name used in TFS-v1 metadata (``DT_INVALID`` if none)."""
    kserve: str
    """KServe v2 / Open Inference Protocol ``datatype``."""
    mindspore: str | None
    """MindSpore Serving canonical ``type`` name (``None`` when MindSpore has no such type)."""
    numpy: np.dtype[np.generic]
    """The numpy dtype tensors of this type use (``object`` of ``bytes`` for STRING)."""
    itemsize: int
    """Bytes per element in binary (raw) form; 0 for variable-size STRING/BYTES."""


def _row(precision: str, tf: str, kserve: str, mindspore: str | None, dtype: object) -> DType:
    np_dtype = np.dtype(dtype)  # type: ignore[call-overload]
    size = 0 if np_dtype.kind == "O" else np_dtype.itemsize
    return DType(precision, tf, kserve, mindspore, np_dtype, size)


TABLE: tuple[DType, ...] = (
    _row("FP32", "DT_FLOAT", "FP32", "float32", np.float32),
    _row("FP64", "DT_DOUBLE", "FP64", "float64", np.float64),
    _row("FP16", "DT_HALF", "FP16", "float16", np.float16),
    _row("BF16", "DT_INVALID", "BF16", None, BF16_CARRIER),
    _row("I8", "DT_INT8", "INT8", "int8", np.int8),
    _row("I16", "DT_INT16", "INT16", "int16", np.int16),
    _row("I32", "DT_INT32", "INT32", "int32", np.int32),
    _row("I64", "DT_INT64", "INT64", "int64", np.int64),
    _row("U8", "DT_UINT8", "UINT8", "uint8", np.uint8),
    _row("U16", "DT_UINT16", "UINT16", "uint16", np.uint16),
    _row("U32", "DT_UINT32", "UINT32", "uint32", np.uint32),
    _row("U64", "DT_UINT64", "UINT64", "uint64", np.uint64),
    _row("BOOL", "DT_BOOL", "BOOL", "bool", np.bool_),
    _row("STRING", "DT_STRING", "BYTES", "bytes", object),
)

BY_PRECISION: dict[str, DType] = {row.precision: row for row in TABLE}
BY_TF: dict[str, DType] = {row.tf: row for row in TABLE if row.tf != "DT_INVALID"}
BY_KSERVE: dict[str, DType] = {row.kserve: row for row in TABLE}
MINDSPORE_ALIASES: dict[str, str] = {"fp16": "float16", "fp32": "float32", "fp64": "float64",
                                     "str": "bytes"}
"""Extra MindSpore ``type`` spellings, mapped to the canonical name (``str`` is a STRING too)."""
BY_MINDSPORE: dict[str, DType] = {
    **{row.mindspore: row for row in TABLE if row.mindspore is not None},
    **{alias: next(r for r in TABLE if r.mindspore == name)
       for alias, name in MINDSPORE_ALIASES.items()},
}
_BY_NUMPY: dict[np.dtype[np.generic], DType] = {
    row.numpy: row for row in TABLE if row.precision != "BF16"
}


def tf_name(precision: str) -> str:
    """``FP32`` → ``DT_FLOAT``; unknown precisions (and BF16) → ``DT_INVALID``, as OVMS does."""
    row = BY_PRECISION.get(precision)
    return row.tf if row is not None else "DT_INVALID"


def precision_from_tf(name: str) -> str | None:
    """``DT_FLOAT`` → ``FP32``; ``None`` for names with no precision."""
    row = BY_TF.get(name)
    return row.precision if row is not None else None


def kserve_name(precision: str) -> str | None:
    """``I64`` → ``INT64``, ``STRING`` → ``BYTES``; ``None`` for unknown precisions."""
    row = BY_PRECISION.get(precision)
    return row.kserve if row is not None else None


def precision_from_kserve(datatype: str) -> str | None:
    """``INT64`` → ``I64``, ``BYTES`` → ``STRING``; ``None`` if not a KServe v2 datatype."""
    row = BY_KSERVE.get(datatype)
    return row.precision if row is not None else None


def kserve_itemsize(datatype: str) -> int | None:
    """Bytes per element of a binary KServe tensor; 0 for BYTES; ``None`` if unknown."""
    row = BY_KSERVE.get(datatype)
    return row.itemsize if row is not None else None


def mindspore_name(precision: str) -> str | None:
    """``FP32`` → ``float32``, ``STRING`` → ``bytes``; ``None`` where MindSpore has no type."""
    row = BY_PRECISION.get(precision)
    return row.mindspore if row is not None else None


def precision_from_mindspore(name: str) -> str | None:
    """``float32``/``fp32`` → ``FP32``, ``str``/``bytes`` → ``STRING``; ``None`` if illegal."""
    row = BY_MINDSPORE.get(name)
    return row.precision if row is not None else None


def numpy_dtype(precision: str) -> np.dtype[np.generic] | None:
    """The numpy dtype for a precision (BF16 → its uint16 carrier); ``None`` if unknown."""
    row = BY_PRECISION.get(precision)
    return row.numpy if row is not None else None


def precision_from_numpy(dtype: np.dtype[np.generic]) -> str | None:
    """``float32`` → ``FP32``; str/bytes/object → ``STRING``; ``None`` for other dtypes.

    A ``uint16`` array is ``U16``: BF16 cannot be told apart from its carrier by dtype alone.
    """
    if dtype.kind in ("S", "U", "O"):
        return "STRING"
    row = _BY_NUMPY.get(np.dtype(dtype))
    return row.precision if row is not None else None
