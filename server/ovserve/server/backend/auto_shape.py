"""``shape: "auto"`` and ``batch_size: "auto"``: a model that reshapes itself to its requests.

OVMS loads such a model with the model's own shape; a request whose shape (``shape: "auto"``)
or batch (``batch_size: "auto"``, dimension 0 only) differs from the loaded one makes OVMS
reload the model with the request's shape and then answer it, instead of refusing it with
``Invalid input shape``. Metadata reports the shape the model has now (after a batch-4 request,
batch 4). OVMS's docs mark this mode deprecated in favour of dynamic shapes (``-1``), which need
no reload; ovserve serves both.

:class:`AutoShapeModel` is the :class:`~ovserve.server.backend.base.LoadedModel` the OpenVINO
backend returns for such a model. Requests are validated against :attr:`AutoShapeModel.accepts`:
the signature with every auto dimension dynamic (the rank, precision and the other dimensions
are still checked); :attr:`AutoShapeModel.signature` is the current, compiled one. ``infer``
runs a request that fits the current model at once; one that does not:

* waits for the model's reshape lock: **one reshape at a time per loaded model version**, so
  requests of a new shape compile it once, not once each;
* reshapes the model to the request's shape and compiles it again, off the event loop
  (``build``, which the backend supplies); a shape the model cannot take is the client's
  ``InvalidInput``: ``Model could not be reshaped with requested shape - <OpenVINO's text>``,
  and the current model keeps serving;
* swaps the new compiled model in. Requests already running on the previous one finish on it;
  it is closed when the last of them returns. So **one compiled model is kept** (the current
  one) plus, briefly, those still finishing calls; no cache of shapes is kept. Requests that
  alternate between shapes therefore compile on every change (as in OVMS): where that is the
  traffic, configure a dynamic dimension (``-1``) instead.

Unlike OVMS, which waits for in-flight requests to end and unloads the model before it reloads
it, the previous compiled model keeps serving the requests that fit it while the new one
compiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..errors import InvalidInput, ModelLoadError
from ..types import Dim, Signature, TensorSpec
from .base import InferTiming
from .openvino_model import OpenVINOModel

__all__ = ["RESHAPE_FAILED", "AutoShapeModel", "relaxed_signature"]

log = logging.getLogger(__name__)

RESHAPE_FAILED = "Model could not be reshaped with requested shape"

Build = Callable[[Mapping[int, Sequence[int]]], OpenVINOModel]


def relaxed_signature(signature: Signature, auto: Mapping[int, bool]) -> Signature:
    """``signature`` with the auto dimensions dynamic: every dimension of an input whose
    ``auto[i]`` is True (``shape: "auto"``), dimension 0 of one whose ``auto[i]`` is False
    (``batch_size: "auto"``)."""
    inputs: list[TensorSpec] = []
    for i, spec in enumerate(signature.inputs):
        whole = auto.get(i)
        if whole is None or not spec.shape:
            inputs.append(spec)
            continue
        dims = tuple(Dim.dynamic() for _ in spec.shape) if whole else (
            Dim.dynamic(), *spec.shape[1:])
        inputs.append(TensorSpec(spec.name, spec.precision, dims, spec.layout))
    return Signature(tuple(inputs), signature.outputs)


class AutoShapeModel:
    """A loaded model version with auto shape or batch (see the module docstring)."""

    def __init__(self, first: OpenVINOModel, build: Build, auto: Mapping[int, bool], *,
                 label: str = "the model") -> None:
        self.label = label
        self.accepts = relaxed_signature(first.signature, auto)
        self.reshapes = 0  # how many times the model was reshaped (logs and tests)
        self._auto = dict(auto)
        self._build = build
        self._current = first
        # (name, static shape) of each auto input of the current model; None: not static
        self._static = self._static_shapes(first.signature)
        self._calls: dict[OpenVINOModel, int] = {first: 0}  # running calls per compiled model
        self._retired: set[OpenVINOModel] = set()  # replaced, closing after their last call
        self._lock = asyncio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ LoadedModel

    @property
    def signature(self) -> Signature:
        """The current compiled model's signature (what metadata reports)."""
        return self._current.signature

    @property
    def nireq(self) -> int:
        return self._current.nireq

    @property
    def streams(self) -> int:
        return self._current.streams

    @property
    def active_requests(self) -> int:
        return sum(model.active_requests for model in self._calls)

    async def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> dict[str, np.ndarray]:
        """Run one inference, reshaping the model first when the request needs another shape."""
        model = self._current
        if not self._fits(inputs) and self._target(model.signature, inputs):
            async with self._lock:
                model = self._current
                target = self._target(model.signature, inputs)
                if target:
                    model = await self._reshape(target)
                self._calls[model] += 1  # before the lock is released: no swap closes it
        else:
            self._calls[model] += 1
        try:
            return await model.infer(inputs, timing)
        finally:
            self._leave(model)

    def close(self) -> None:
        """Close every compiled model (the manager calls this once no request uses it)."""
        self._closed = True
        for model in list(self._calls):
            model.close()
        self._calls.clear()
        self._retired.clear()

    # ------------------------------------------------------------------ reshaping

    def _fits(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """The fast check of the common case: every auto input has the current static shape
        (a tuple comparison per input; :meth:`_target` decides everything else)."""
        for name, shape in self._static:
            array = inputs.get(name)
            if array is None or array.shape != shape:
                return False
        return True

    def _static_shapes(self, signature: Signature) -> list[tuple[str, tuple[int, ...] | None]]:
        out: list[tuple[str, tuple[int, ...] | None]] = []
        for i in self._auto:
            spec = signature.inputs[i]
            static = spec.shape is not None and all(d.is_static for d in spec.shape)
            out.append((spec.name, tuple(d.min for d in spec.shape or ()) if static else None))
        return out

    def _target(self, signature: Signature, inputs: Mapping[str, np.ndarray]
                ) -> dict[int, tuple[int, ...]]:
        """Empty when the request fits ``signature``; else the shape of every auto input for
        it (the request's where it differs, the current one elsewhere; -1 is dynamic)."""
        target: dict[int, tuple[int, ...]] = {}
        changed = False
        for i, whole in self._auto.items():
            spec = signature.inputs[i]
            if spec.shape is None:
                continue
            current = tuple(d.min if d.is_static else -1 for d in spec.shape)
            target[i] = current
            array = inputs.get(spec.name)
            if array is None or array.ndim != len(spec.shape):
                continue  # validation refused these already; OpenVINO would say why
            if all(d.accepts(n) for d, n in zip(spec.shape, array.shape, strict=True)):
                continue
            changed = True
            target[i] = tuple(array.shape) if whole else (array.shape[0], *current[1:])
        return target if changed else {}

    async def _reshape(self, target: dict[int, tuple[int, ...]]) -> OpenVINOModel:
        """Compile the model for ``target`` (the lock is held) and make it the current one."""
        if self._closed:
            raise InvalidInput("Model version is unloaded")
        text = ", ".join(f"{self._current.signature.inputs[i].name} "
                         f"({','.join(str(d) for d in dims)})" for i, dims in target.items())
        log.info("Reshaping %s to %s for a request", self.label, text)
        job = asyncio.ensure_future(asyncio.to_thread(self._build, target))
        try:
            model = await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._drop_orphan)
            raise
        except ModelLoadError as exc:
            raise InvalidInput(f"{RESHAPE_FAILED} - {exc}") from None
        self._install(model)
        return model

    @staticmethod
    def _drop_orphan(job: asyncio.Future[OpenVINOModel]) -> None:
        """A reshape whose request was cancelled (its client left): close what it built."""
        if not job.cancelled() and job.exception() is None:
            job.result().close()

    def _install(self, model: OpenVINOModel) -> None:
        old = self._current
        self._current = model
        self._static = self._static_shapes(model.signature)
        self._calls[model] = 0
        self.reshapes += 1
        log.info("%s now has input shapes %s", self.label,
                 ", ".join(f"{s.name} {s.shape_text()}" for s in model.signature.inputs))
        self._retire(old)

    def _retire(self, model: OpenVINOModel) -> None:
        if self._calls.get(model, 0) == 0:
            self._calls.pop(model, None)
            with contextlib.suppress(Exception):
                model.close()
        else:
            self._retired.add(model)

    def _leave(self, model: OpenVINOModel) -> None:
        if model not in self._calls:
            return  # closed meanwhile
        self._calls[model] -= 1
        if model in self._retired and self._calls[model] == 0:
            self._retired.discard(model)
            self._calls.pop(model)
            model.close()
