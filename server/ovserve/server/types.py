"""Protocol-neutral types: tensor specs, model signatures, and request validation.

Every wire codec decodes into plain ``dict[str, numpy.ndarray]`` inputs and encodes from the same
for outputs; the manager and backend never see JSON. String/bytes tensors are numpy arrays of
dtype ``object`` holding ``bytes``.

Precisions are named as OVMS names them (``FP32``, ``I64``, ``U8``, ``BOOL``, ``STRING``…); the
per-wire names (``DT_FLOAT``, ``FP32``/``INT64``, ``float32``) live in :mod:`codecs.dtypes`.

:func:`validate_inputs` checks decoded inputs against a signature and raises
:class:`~ovserve.server.errors.InvalidInput` with OVMS's exact texts, e.g.
``Invalid input shape - Expected: (1,3,224,224); Actual: (1,3,100,100); input name: x``.
It is shared by the TFS v1 and KServe v2 dialects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .errors import InvalidInput

PRECISION_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "FP16": np.dtype(np.float16),
    "I8": np.dtype(np.int8),
    "I16": np.dtype(np.int16),
    "I32": np.dtype(np.int32),
    "I64": np.dtype(np.int64),
    "U8": np.dtype(np.uint8),
    "U16": np.dtype(np.uint16),
    "U32": np.dtype(np.uint32),
    "U64": np.dtype(np.uint64),
    "BOOL": np.dtype(np.bool_),
    "STRING": np.dtype(object),
}
# BF16 has no numpy dtype; it travels as raw 2-byte words (uint16) in binary form only.
BF16_CARRIER = np.dtype(np.uint16)
NUMPY_TO_PRECISION: dict[np.dtype[np.generic], str] = {
    v: k for k, v in PRECISION_TO_NUMPY.items()
}


def precision_of(array: np.ndarray) -> str:
    """The OVMS precision name for a numpy array (strings/bytes → ``STRING``)."""
    if array.dtype.kind in ("S", "U", "O"):
        return "STRING"
    try:
        return NUMPY_TO_PRECISION[array.dtype]
    except KeyError:
        raise InvalidInput(f"Unsupported data type {array.dtype}") from None


@dataclass(frozen=True)
class Dim:
    """One dimension: static when ``min == max``; ``max == -1`` means unbounded."""

    min: int
    max: int

    @classmethod
    def static(cls, n: int) -> Dim:
        return cls(n, n)

    @classmethod
    def dynamic(cls) -> Dim:
        return cls(0, -1)

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def accepts(self, n: int) -> bool:
        return n >= self.min and (self.max == -1 or n <= self.max)

    def as_int(self) -> int:
        """The size, or -1 for any dynamic dimension (as OVMS metadata shows it)."""
        return self.min if self.is_static else -1

    def __str__(self) -> str:
        if self.is_static:
            return str(self.min)
        if self.min == 0 and self.max == -1:
            return "-1"
        return f"{self.min}:{self.max}"


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, OVMS precision, shape (None = dynamic rank), layout."""

    name: str
    precision: str
    shape: tuple[Dim, ...] | None
    layout: str = ""

    @property
    def dtype(self) -> np.dtype[np.generic]:
        return PRECISION_TO_NUMPY.get(self.precision, BF16_CARRIER)

    def shape_ints(self) -> list[int]:
        return [d.as_int() for d in self.shape] if self.shape is not None else []

    def shape_text(self) -> str:
        return "(" + ",".join(str(d) for d in self.shape or ()) + ")"

    @property
    def has_batch_dim(self) -> bool:
        """True when dimension 0 can carry several instances (dynamic, a range, or N layout)."""
        if not self.shape:
            return False
        if self.layout[:1] == "N":
            return True
        return not self.shape[0].is_static or self.shape[0].min > 1


@dataclass(frozen=True)
class Signature:
    """A model version's inputs and outputs, in the model's order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None

    def output(self, name: str) -> TensorSpec | None:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(d) for d in shape) + ")"


def _fits(dims: tuple[Dim, ...], shape: tuple[int, ...]) -> bool:
    """Whether each size is one its dimension accepts (same rank)."""
    # a loop, not all(<generator>): this runs per input of every request, and the generator
    # costs ~0.5 us more a call
    for dim, n in zip(dims, shape, strict=True):  # noqa: SIM110
        if not dim.accepts(n):
            return False
    return True


def validate_inputs(inputs: Mapping[str, np.ndarray], signature: Signature) -> None:
    """Check names, counts, ranks, batch sizes, shapes and precisions, with OVMS's texts."""
    # the count first, as OVMS's validator does: a missing input is "Invalid number of
    # inputs"; a wrong name in a request of the right size is "Missing input with specific name"
    if len(inputs) != len(signature.inputs):
        raise InvalidInput(
            f"Invalid number of inputs - Expected: {len(signature.inputs)}; Actual: {len(inputs)}"
        )
    for spec in signature.inputs:
        if spec.name not in inputs:
            raise InvalidInput(f"Missing input with specific name - Required input: {spec.name}")
    for spec in signature.inputs:
        array = inputs[spec.name]
        got = precision_of(array)
        want = spec.precision
        if got != want and not (want == "BF16" and array.dtype == BF16_CARRIER):
            raise InvalidInput(
                f"Invalid input precision - Expected: {want}; Actual: {got}; input name: {spec.name}"
            )
        if spec.shape is None:
            continue
        actual: tuple[int, ...] = array.shape
        if len(actual) != len(spec.shape):
            raise InvalidInput(
                f"Invalid number of shape dimensions - Expected: {spec.shape_text()}; "
                f"Actual: {_shape_text(actual)}; input name: {spec.name}"
            )
        if _fits(spec.shape, actual):  # the common case, without the generators below
            continue
        if spec.shape and not spec.shape[0].accepts(actual[0]) and spec.layout[:1] == "N":
            raise InvalidInput(
                f"Invalid input batch size - Expected: {spec.shape[0]}; Actual: {actual[0]}; "
                f"input name: {spec.name}"
            )
        if not all(d.accepts(n) for d, n in zip(spec.shape, actual, strict=True)):
            if spec.shape and not spec.shape[0].accepts(actual[0]) and all(
                d.accepts(n) for d, n in zip(spec.shape[1:], actual[1:], strict=True)
            ):
                raise InvalidInput(
                    f"Invalid input batch size - Expected: {spec.shape[0]}; Actual: {actual[0]}; "
                    f"input name: {spec.name}"
                )
            raise InvalidInput(
                f"Invalid input shape - Expected: {spec.shape_text()}; "
                f"Actual: {_shape_text(actual)}; input name: {spec.name}"
            )


class State(IntEnum):
    """Model version states (tensorflow.serving ModelVersionStatus.State)."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    """One version's state as reported by status endpoints.

    ``error_code`` is OVMS's code name (``OK``, ``UNKNOWN``, ``FAILED_PRECONDITION``).
    ``error_message`` is ``"OK"`` when healthy (as OVMS sends it) and, beyond OVMS, the real load
    error text when a load failed (OVMS repeats the code name there).
    """

    version: int
    state: State
    error_code: str = "OK"
    error_message: str = "OK"

    @property
    def failed(self) -> bool:
        return self.state == State.LOADING and self.error_code == "UNKNOWN"
