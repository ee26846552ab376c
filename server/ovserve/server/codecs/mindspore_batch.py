"""MindSpore-style batching: check each instance against the model, stack the good ones into
as few inference calls as the model's batch dimension allows, and split the results again.

Called by :mod:`ovserve.server.http.mindspore` between decoding
(:func:`ovserve.server.codecs.mindspore.decode_instances`) and encoding
(:func:`ovserve.server.codecs.mindspore.encode_instances`)::

    plan = batch_instances(instances, signature, servable="add", method="predict")
    outputs = [await model.infer(batch.inputs) for batch in plan.batches]  # or an error text
    results = collect_results(plan, outputs)   # one dict (or error text) per instance
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput
from ..types import Dim, Signature, TensorSpec
from . import dtypes
from .mindspore import TEXT_KMSI, MsResult, MsValue, element_count, kmsi_name

__all__ = ["MsBatch", "MsPlan", "batch_instances", "collect_results"]


@dataclass(frozen=True)
class MsBatch:
    """One inference call. Row ``k`` of each output answers instance ``indices[k]`` when
    ``batched``; rows past ``len(indices)`` are padding. Unbatched: the whole output answers
    the single instance."""

    indices: tuple[int, ...]
    inputs: dict[str, np.ndarray]
    batched: bool
    rows: int


@dataclass(frozen=True)
class MsPlan:
    count: int  # instances in the request
    batches: list[MsBatch]
    errors: dict[int, str]  # instance index -> error text


def batch_instances(
    instances: Sequence[Mapping[str, MsValue]], signature: Signature, *, servable: str, method: str
) -> MsPlan:
    """Check each instance against the model and group the good ones into inference calls.

    A missing input fails the request (raises); a size or type mismatch fails its instance only.
    Stacking: when every model input has a batch dimension (``TensorSpec.has_batch_dim``), an
    instance value has the model shape without it (a leading 1 is accepted too) and instances of
    equal shapes are stacked, in chunks no larger than the batch dimension allows (a static batch
    of N is padded with copies of the chunk's first instance). When every input's first dimension
    is a static 1, each instance runs alone as a batch of one; otherwise each instance runs alone
    with the model's full shape. On a fully static model whose first dimension is over 1 and
    not a declared batch (no ``N`` layout), an instance of the model's whole shape runs alone
    as it is (MindSpore's ``with_batch_dim=False``); smaller instances are stacked as above.
    """
    specs = signature.inputs
    for instance in instances:
        for spec in specs:
            if spec.name not in instance:
                raise InvalidInput(
                    f"Cannot find input {spec.name} in instance input , servable {servable}, "
                    f"method {method}"
                )
    stack = bool(specs) and all(s.has_batch_dim for s in specs)
    ones = bool(specs) and all(s.shape and s.shape[0].is_static and s.shape[0].min == 1
                               for s in specs)
    # A fully static model whose first dimension is over 1 and not declared a batch (layout N)
    # may have no batch dimension at all (MindSpore's with_batch_dim=False): an instance of the
    # model's whole shape then runs alone, as it is.
    whole = stack and all(_maybe_unbatched(s) for s in specs)
    errors: dict[int, str] = {}
    good: dict[int, dict[str, np.ndarray]] = {}
    alone: dict[int, dict[str, np.ndarray]] = {}
    for index, instance in enumerate(instances):
        result = _fit_all(instance, specs, stack or ones)
        if isinstance(result, str) and whole:
            full = _fit_all(instance, specs, False)
            if not isinstance(full, str):
                alone[index] = full
                continue
        if isinstance(result, str):
            errors[index] = result
        else:
            good[index] = result
    if not (stack or ones):
        batches = [MsBatch((i,), inputs, False, 1) for i, inputs in good.items()]
    elif ones:
        batches = [MsBatch((i,), {k: v[np.newaxis] for k, v in inputs.items()}, True, 1)
                   for i, inputs in good.items()]
    else:
        batches = _stacked(good, [s.shape[0] for s in specs if s.shape])
    batches += [MsBatch((i,), inputs, False, 1) for i, inputs in alone.items()]
    return MsPlan(len(instances), batches, errors)


def _maybe_unbatched(spec: TensorSpec) -> bool:
    return (spec.shape is not None and bool(spec.shape) and all(d.is_static for d in spec.shape)
            and spec.shape[0].min > 1 and spec.layout[:1] != "N")


def _fit_all(instance: Mapping[str, MsValue], specs: Sequence[TensorSpec], batched: bool
             ) -> dict[str, np.ndarray] | str:
    """Every input of one instance shaped for the model (per batch row when ``batched``), or
    the first error text."""
    fitted: dict[str, np.ndarray] = {}
    for position, spec in enumerate(specs):
        per = spec.shape[1:] if spec.shape is not None and batched else spec.shape
        result = _fit(instance[spec.name], position, spec, per)
        if isinstance(result, str):
            return result
        fitted[spec.name] = result
    return fitted


def _stacked(good: dict[int, dict[str, np.ndarray]], dims: list[Dim]) -> list[MsBatch]:
    low = max(1, *(d.min for d in dims))
    highs = [d.max for d in dims if d.max != -1]
    high = min(highs) if highs else None
    if high is not None and high < low:  # inputs disagree on the batch size: run one by one
        low = high = 1
    groups: dict[tuple[tuple[int, ...], ...], list[int]] = {}
    for index, inputs in good.items():
        groups.setdefault(tuple(a.shape for a in inputs.values()), []).append(index)
    batches: list[MsBatch] = []
    for indices in groups.values():
        size = high or len(indices)
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            rows = max(len(chunk), low)
            members = chunk + [chunk[0]] * (rows - len(chunk))
            inputs = {name: np.stack([good[i][name] for i in members])
                      for name in good[chunk[0]]}
            batches.append(MsBatch(tuple(chunk), inputs, True, rows))
    return batches


def _ms_type(value: MsValue) -> tuple[np.ndarray, str]:
    """The value as an array (text as ``bytes`` objects) and its MindSpore type name."""
    if isinstance(value, str | bytes):
        value = np.array([value], dtype=object).reshape(())
    if value.dtype != object:
        return value, kmsi_name(dtypes.precision_from_numpy(value.dtype))
    flat = value.reshape(-1)
    kind = "kMSI_String" if flat.size and isinstance(flat[0], str) else "kMSI_Bytes"
    out = np.empty(flat.size, dtype=object)
    out[:] = [v.encode() if isinstance(v, str) else v for v in flat]
    return out.reshape(value.shape), kind


def _fit(value: MsValue, index: int, spec: TensorSpec, per: tuple[Dim, ...] | None
         ) -> np.ndarray | str:
    """The value shaped for the model (per instance), or MindSpore's error text."""
    array, got = _ms_type(value)
    want = kmsi_name(spec.precision)
    type_error = (f"Given model input {index} data type {got} not match the data type {want} "
                  "defined in model")
    text_model = spec.precision == "STRING"
    if (got in TEXT_KMSI) != text_model:
        return type_error
    static = per is not None and all(d.is_static for d in per)
    if not text_model:
        if static and per is not None:
            expected = element_count(d.min for d in per) * spec.dtype.itemsize
            if array.nbytes != expected:
                return (f"Given model input {index} size {array.nbytes} not match the size "
                        f"{expected} defined in model")
        if got != want:
            return type_error
    shape = _shape_for(tuple(array.shape), per)
    if shape is None:
        model = [d.as_int() for d in per or ()]
        return (f"Given model input {index} shape {list(array.shape)} not match the shape "
                f"{model} defined in model")
    return array.reshape(shape)


def _shape_for(actual: tuple[int, ...], per: tuple[Dim, ...] | None) -> tuple[int, ...] | None:
    if per is None:
        return actual
    if all(d.is_static for d in per):
        target = tuple(d.min for d in per)
        return target if element_count(actual) == element_count(target) else None
    candidates = [actual, (1, *actual)]
    if actual[:1] == (1,):
        candidates.insert(1, actual[1:])
    for shape in candidates:
        if len(shape) == len(per) and all(d.accepts(n) for d, n in zip(per, shape, strict=True)):
            return shape
    return None


# ---------------------------------------------------------------------------------- results


def collect_results(plan: MsPlan, outputs: Sequence[Mapping[str, np.ndarray] | str]
                    ) -> list[MsResult]:
    """Per-instance results in request order; ``outputs[k]`` answers ``plan.batches[k]`` (an
    error text when that call failed)."""
    results: list[MsResult] = ["" for _ in range(plan.count)]
    for index, message in plan.errors.items():
        results[index] = message
    for batch, out in zip(plan.batches, outputs, strict=True):
        for row, index in enumerate(batch.indices):
            if isinstance(out, str):
                results[index] = out
                continue
            results[index] = {
                name: array[row] if batch.batched and array.ndim and array.shape[0] == batch.rows
                else array
                for name, array in out.items()
            }
    return results


