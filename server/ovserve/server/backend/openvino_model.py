"""A compiled OpenVINO model and its pool of infer requests: inference that never blocks asyncio.

Created by :meth:`ovserve.server.backend.openvino.OpenVINOBackend.load`; the manager lends it to
requests, which ``await model.infer({"x": array}, timing)``. With :mod:`.openvino`, the only
modules of the server that import :mod:`openvino`.

Inference keeps a pool of ``nireq`` infer requests. A call takes a free one (or waits on an
asyncio future, never blocking the loop), sets zero-copy input tensors, calls ``start_async``
and awaits a future that the request's completion callback resolves from the OpenVINO thread via
``loop.call_soon_threadsafe``. OpenVINO's Python binding does not call the callback when an
inference fails, so while requests run a light sweep (every few milliseconds) polls
``wait_for(0)`` on them, which raises the failure; the error becomes ``InferenceFailed``.

The inline path. For a tiny model the asynchronous round trip costs far more than the inference:
``start_async`` releases the GIL, the completion callback needs it back on an OpenVINO thread, and
``call_soon_threadsafe`` wakes the loop: ~120 us of event-loop time a call under load (cProfile),
against ~25 us for a synchronous ``infer()`` of a ``[4,2,2]`` add (measured on the 2-core
development machines). So a request with at most ``INLINE_MAX_BYTES`` of input, arriving while no
call waits for the pool, runs ``infer()`` synchronously on the loop, on an infer request of its own
(the pool's keep their completion callbacks). Larger inputs always use the pool: for a
``[1,3,224,224]`` float tensor (602 KB) the pool served more requests a second than the inline path
in every A/B run (bench/ab.py, v2 binary), with less event-loop CPU a request (1015 against 1277
us): the inference then overlaps the loop's reading of the next bodies instead of stopping it, and
its inputs are shared with OpenVINO instead of copied. An inline call's cost is the smaller of the
process's CPU time and the wall time during the call: CPU time counts the inference's own work on
OpenVINO's threads but also their spin-waiting (the CPU plugin's idle worker spins through every
call, about doubling a small model's CPU time), wall time also counts waiting for a core on a busy
machine; each over-counts where the other does not. As only whether a cost is within the budget
matters, the CPU clock is read only after a call over it (reading it while OpenVINO's worker spins
costs ~25 us under load); the first call over the budget of a run is therefore not counted. Whether
a model starts on this path is decided while it loads, off the loop:
:meth:`OpenVINOModel.calibrate` measures inference on zeros (after a warming one; the cheapest of
up to three tries), and only a model that cost at most ``INLINE_MAX_US`` starts inline. While the
lower quartile of the costs of its last few inline calls stays within ``INLINE_MAX_US`` it keeps
doing so; once it is above, inlining is off for this loaded model and every later call uses the
pool. The lower quartile ignores the slow calls that a busy machine produces, even in runs (5 of 9
calls in a row over the budget have been seen), while a model that is really slower on real inputs
leaves within about five calls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import time
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import openvino as ov
from openvino import _pyopenvino

from ..errors import InferenceFailed, InvalidInput
from ..types import BF16_CARRIER, Signature
from .base import InferTiming

__all__ = ["OpenVINOModel", "first_line", "ov_message"]

log = logging.getLogger(__name__)

_FROM = re.compile(r"(?:Caught exception:\s*)?Exception from \S+:\d+:\s*")
_WHERE = re.compile(r"\s+at \S+\.(?:cpp|hpp|h):\d+:?")
_Tensor = ov.Tensor
_SWEEP_SECONDS = 0.005
_SWEEP_MAX_SECONDS = 0.2

# The inline path (see the module docstring): requests with at most INLINE_MAX_BYTES of input run
# synchronously on the event loop while the lower quartile of the costs of this model's last
# _INLINE_WINDOW inline calls stays within INLINE_MAX_US.
INLINE_MAX_BYTES = 64 * 1024
INLINE_MAX_US = 500.0
_INLINE_WINDOW = 9  # recent inline calls whose lower quartile decides
_INLINE_MIN_CALLS = 5

# Per-tensor conversion kinds (decided once at load time, used on the hot path).
_PLAIN, _BF16, _STRING = 0, 1, 2
_KINDS = {"BF16": _BF16, "STRING": _STRING}


def _clean_lines(exc: BaseException) -> list[str]:
    lines = (_WHERE.sub(":", _FROM.sub("", ln)).strip() for ln in str(exc).splitlines())
    return [ln for ln in lines if ln]


def ov_message(exc: BaseException) -> str:
    """OpenVINO's error text without its ``Exception from src/...cpp:N:`` location noise."""
    return " ".join(_clean_lines(exc)) or type(exc).__name__


def first_line(exc: BaseException) -> str:
    return next(iter(_clean_lines(exc)), type(exc).__name__)

class _Slot:
    """One infer request of the pool and the call currently using it."""

    __slots__ = ("__weakref__", "complete", "future", "inputs", "loop", "request")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inputs: list[Any] | None = None  # keeps shared input memory alive while running
        self.complete: Any = None


_RawInferRequest = _pyopenvino.InferRequest  # the binding's class, under the Python wrapper
_NO_INPUTS: dict[int, Any] = {}
_raw_infer_ok = True


def _infer_sync(request: Any, copy: bool = False) -> list[np.ndarray] | None:
    """``request.infer()`` through the binding itself (the Python wrapper's result dictionary
    costs ~5-10 us a call). With ``copy``, the outputs as owned arrays in model order, or
    ``None`` where the binding has another signature (then read them from the request)."""
    global _raw_infer_ok
    if _raw_infer_ok:
        try:
            results = _RawInferRequest.infer(request, _NO_INPUTS, not copy, False)
        except TypeError:  # another OpenVINO release, another signature: use the public call
            _raw_infer_ok = False
        else:
            return list(results.values()) if copy else None
    request.infer()
    return None


def _on_request_done(ref: weakref.ref[_Slot]) -> None:
    """OpenVINO completion callback (an OpenVINO thread, GIL held): wake the event loop."""
    slot = ref()
    if slot is None or slot.loop is None or slot.complete is None:
        return
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
        slot.loop.call_soon_threadsafe(slot.complete, slot)


def _bf16_words(array: np.ndarray) -> np.ndarray:
    """BF16 data as a writeable C-contiguous uint16 array (float32 input is rounded to BF16)."""
    if array.dtype == np.float32:
        bits = np.ascontiguousarray(array).view(np.uint32).astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(BF16_CARRIER)
    words = np.ascontiguousarray(array.view(BF16_CARRIER) if array.dtype.itemsize == 2 else array,
                                 dtype=BF16_CARRIER)
    return words if words.flags.writeable else words.copy()


def _noop(_: Any) -> None:
    return None


class OpenVINOModel:
    """A compiled model version with a pool of ``nireq`` infer requests (LoadedModel)."""

    def __init__(self, compiled: Any, signature: Signature, *, nireq: int, streams: int,
                 label: str = "the model") -> None:
        self.signature = signature
        self.label = label
        self.nireq = nireq
        self.streams = streams
        self._compiled = compiled
        self._slots = [_Slot(compiled.create_infer_request()) for _ in range(nireq)]
        for slot in self._slots:
            slot.complete = self._complete
            slot.request.set_callback(_on_request_done, weakref.ref(slot))
        self._free = list(self._slots)
        self._waiters: collections.deque[asyncio.Future[_Slot]] = collections.deque()
        self._active = 0
        self._sweep: asyncio.TimerHandle | None = None
        self._sweep_delay = _SWEEP_SECONDS
        self._closed = False
        self._inputs = [(i, s.name, _KINDS.get(s.precision, _PLAIN))
                        for i, s in enumerate(signature.inputs)]
        self._outputs = [(i, s.name, _KINDS.get(s.precision, _PLAIN))
                         for i, s in enumerate(signature.outputs)]
        self._plain_inputs = all(k == _PLAIN for _, _, k in self._inputs)
        self._plain_outputs = all(k == _PLAIN for _, _, k in self._outputs)
        self._output_names = [name for _, name, _ in self._outputs]
        self._inline = False  # until calibrate() measured the model as fast enough
        self._inline_costs: collections.deque[float] = collections.deque(maxlen=_INLINE_WINDOW)
        # whether the next inline call reads the process CPU clock (see _infer_inline)
        self._cpu_clock = False
        self._inline_request: Any = None  # calibrate() creates it: one request, no callback
        # per input, the array whose memory backs the inline request's input tensor, so a
        # request of the same shape is copied in without a new tensor
        self._inline_owned: dict[int, np.ndarray] = {}

    @property
    def active_requests(self) -> int:
        return self._active

    async def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> dict[str, np.ndarray]:
        """Run one inference on a free infer request; outputs copied out, in model order.

        On the inline path this returns without ever suspending the calling coroutine.
        """
        if self._inline and not self._waiters:
            nbytes = 0
            for array in inputs.values():
                nbytes += array.nbytes
            if nbytes <= INLINE_MAX_BYTES:
                return self._infer_inline(inputs, timing)
        if timing is not None:
            t0 = time.perf_counter()
        slot = self._free.pop() if self._free else await self._acquire()
        if timing is not None:
            t1 = time.perf_counter()
            timing.wait_us = (t1 - t0) * 1e6
        request = slot.request
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        try:
            if self._plain_inputs:
                arrays = [inputs[name] for _, name, _ in self._inputs]
                for i, array in enumerate(arrays):
                    flags = array.flags
                    # positional arguments: pybind11 keyword parsing costs ~0.5 us a call
                    request.set_input_tensor(i, _Tensor(array, flags.c_contiguous
                                                        and flags.writeable))
            else:
                tensors, arrays = self._tensors(inputs)
                for i, tensor in enumerate(tensors):
                    request.set_input_tensor(i, tensor)
            slot.inputs = arrays  # shared tensors do not own their memory
            slot.future = future
            slot.loop = loop
            request.start_async()
        except Exception as exc:  # bad input shape/type, caught synchronously by OpenVINO
            slot.future = None
            slot.inputs = None
            self._put(slot)
            if isinstance(exc, KeyError):
                raise InvalidInput(
                    f"Missing input with specific name - Required input: {exc.args[0]}"
                ) from None
            raise InferenceFailed(ov_message(exc)) from None
        self._active += 1
        if self._sweep is None:
            self._sweep_delay = _SWEEP_SECONDS
            self._sweep = loop.call_later(_SWEEP_SECONDS, self._check_failures)
        try:
            await future
            if self._plain_outputs:
                outputs = {name: request.get_output_tensor(i).data.copy()
                           for i, name, _ in self._outputs}
            else:
                outputs = self._read_outputs(request)
        finally:
            if not future.cancelled():  # a cancelled call's request is released on completion
                self._release(slot)
        if timing is not None:
            timing.infer_us = (time.perf_counter() - t1) * 1e6
        return outputs

    def _infer_inline(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None
    ) -> dict[str, np.ndarray]:
        """A synchronous inference on the loop (the inline path of the module docstring)."""
        request = self._inline_request
        self._active += 1
        # The process CPU clock is read only after a call over the budget: while OpenVINO's
        # worker spins on the other core, reading it costs ~25 us under load (py-spy: 4 % of
        # the event loop's samples for the small model), more than the inference.
        cpu_clock = self._cpu_clock
        started = time.perf_counter()
        cpu = time.process_time() if cpu_clock else 0.0
        try:
            # plain inputs only: calibrate() leaves models with BF16 or STRING inputs on the pool
            owned = self._inline_owned
            for i, (_, name, _) in enumerate(self._inputs):
                array = inputs[name]
                mine = owned.get(i)
                if mine is not None and mine.shape == array.shape and mine.dtype == array.dtype:
                    mine[...] = array
                else:
                    mine = owned[i] = np.array(array, order="C")
                    request.set_input_tensor(i, _Tensor(mine, True))
            if self._plain_outputs:
                copies = _infer_sync(request, copy=True)
                if copies is not None and len(copies) == len(self._output_names):
                    outputs = dict(zip(self._output_names, copies, strict=True))
                else:
                    outputs = {name: request.get_output_tensor(i).data.copy()
                               for i, name, _ in self._outputs}
            else:
                _infer_sync(request)
                outputs = self._read_outputs(request)
        except Exception as exc:
            if isinstance(exc, KeyError):
                raise InvalidInput(
                    f"Missing input with specific name - Required input: {exc.args[0]}"
                ) from None
            raise InferenceFailed(ov_message(exc)) from None
        finally:
            self._active -= 1
        spent = (time.perf_counter() - started) * 1e6
        if timing is not None:
            timing.wait_us = 0.0
            timing.infer_us = spent
        # The cost is the smaller of wall and CPU time: OpenVINO's spinning workers inflate the
        # second, a busy machine's waits for a core the first (see the module docstring). Only
        # whether a cost is within the budget matters, so within it the wall time is the cost;
        # a call over it without a CPU reading is not counted, and the next calls read the CPU
        # clock until one is within the budget again.
        self._cpu_clock = spent > INLINE_MAX_US
        if spent <= INLINE_MAX_US:
            cost = spent
        elif cpu_clock:
            cost = min(spent, (time.process_time() - cpu) * 1e6)
        else:
            return outputs
        # the lower quartile of the recent calls: only a model over INLINE_MAX_US on at least 7
        # of its last 9 calls (4 of the first 5) leaves, as a really slower one does within
        # about five calls. Slow calls of a fast model come in runs on a busy machine: under wrk
        # on 2 cores, 5 of 9 calls of the add model at 0.6-1 ms were seen (the loop thread
        # waiting for a core while OpenVINO's worker spun), never 7; single calls of tens of ms
        # also happen.
        costs = self._inline_costs
        costs.append(cost)
        quartile = sorted(costs)[len(costs) // 4]
        # decide on five calls at least (the calibration counts as one)
        self._inline = len(costs) < _INLINE_MIN_CALLS or quartile <= INLINE_MAX_US
        if not self._inline:
            log.info("Inference of %s costs %.0f us (lower quartile of the last %d: %.0f us): "
                     "using the infer request pool from now on", self.label, cost, len(costs),
                     quartile)
        return outputs

    @property
    def inline(self) -> bool:
        """Whether small requests still run inline (see the module docstring)."""
        return self._inline

    @inline.setter
    def inline(self, value: bool) -> None:
        """``False``: every call uses the infer request pool; ``True``: inline small requests
        again (if :meth:`calibrate` succeeded), with a fresh window of measured costs."""
        self._inline = value and self._inline_request is not None
        if value:
            self._inline_costs.clear()

    def calibrate(self) -> float | None:
        """Time inference on zeros (after a warming one; the cheapest of up to three tries) and
        enable the inline path if it cost at most ``INLINE_MAX_US``. Blocks: the backend calls it
        while loading, off the event loop. Returns the microseconds measured, or ``None`` when the
        model cannot be calibrated (string or BF16 inputs, dynamic rank, a failing inference) or
        its smallest request is over ``INLINE_MAX_BYTES``: it then always uses the pool."""
        inputs: list[np.ndarray] = []
        for spec in self.signature.inputs:
            dtype = spec.dtype
            if spec.shape is None or spec.precision in _KINDS or dtype.kind not in "iufb":
                return None
            inputs.append(np.zeros([max(1, d.min) for d in spec.shape], dtype=dtype))
        if sum(a.nbytes for a in inputs) > INLINE_MAX_BYTES:
            return None  # no request of this model can run inline
        # The inline path gets a request of its own, so it never takes one from the pool (and
        # needs no completion callback).
        request = self._compiled.create_infer_request()
        try:
            for i, array in enumerate(inputs):
                request.set_input_tensor(i, _Tensor(array, True))
            _infer_sync(request)
            # up to three tries, as one call on a busy machine may wait for a core; no more once
            # one is within the budget, or when one is so far over it that no wait explains it
            spent = math.inf
            for _ in range(3):
                started, cpu = time.perf_counter(), time.process_time()
                _infer_sync(request)
                wall_us = (time.perf_counter() - started) * 1e6
                spent = min(spent, wall_us, (time.process_time() - cpu) * 1e6)  # as _infer_inline
                if spent <= INLINE_MAX_US or spent > 10 * INLINE_MAX_US:
                    break
        except Exception as exc:  # a model that needs real data: no inline path, no harm done
            log.debug("Could not calibrate %s: %s", self.label, ov_message(exc))
            return None
        self._inline_request = request
        self._inline_owned = dict(enumerate(inputs))  # the zeros now back its input tensors
        self._inline_costs.append(spent)
        self._inline = spent <= INLINE_MAX_US
        return spent

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> tuple[list[Any], list[np.ndarray]]:
        """Tensors (and the arrays they share) when some inputs are BF16 or STRING."""
        tensors: list[Any] = []
        arrays: list[np.ndarray] = []
        for _, name, kind in self._inputs:
            array = inputs[name]
            if kind == _STRING:
                tensors.append(ov.Tensor(np.asarray(array, dtype=np.bytes_), shared_memory=False))
                continue
            if kind == _BF16:
                array = _bf16_words(array)
                tensors.append(ov.Tensor(array, list(array.shape), ov.Type.bf16))
            else:
                array = np.ascontiguousarray(array)
                tensors.append(ov.Tensor(array, shared_memory=bool(array.flags.writeable)))
            arrays.append(array)
        return tensors, arrays

    def _read_outputs(self, request: Any) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = {}
        for i, name, kind in self._outputs:
            tensor = request.get_output_tensor(i)
            if kind == _STRING:
                outputs[name] = np.array(tensor.bytes_data, dtype=object)
            elif kind == _BF16:
                outputs[name] = tensor.data.view(BF16_CARRIER).copy()
            else:
                outputs[name] = tensor.data.copy()
        return outputs

    # -------------------------------------------------------------- the pool

    async def _acquire(self) -> _Slot:
        if self._closed:
            raise InferenceFailed("Model version is unloaded")
        waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._put(waiter.result())  # handed a request just as we were cancelled
            raise

    def _put(self, slot: _Slot) -> None:
        """Hand a free request to the oldest waiter, or back to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        if not self._closed:
            self._free.append(slot)

    def _release(self, slot: _Slot) -> None:
        self._active -= 1
        slot.future = None
        slot.inputs = None
        self._put(slot)

    def _complete(self, slot: _Slot) -> None:
        """On the loop: a request finished successfully."""
        future = slot.future
        if future is None:
            return
        if future.cancelled():
            self._release(slot)
        elif not future.done():
            future.set_result(None)

    def _check_failures(self) -> None:
        """On the loop, while requests run: surface failed ones (their callback never comes)."""
        self._sweep = None
        for slot in self._slots:
            future = slot.future
            if future is None or (future.done() and not future.cancelled()):
                continue
            try:
                slot.request.wait_for(0)
            except Exception as exc:
                if future.cancelled():
                    self._release(slot)
                else:
                    future.set_exception(InferenceFailed(ov_message(exc)))
        if self._active > 0 and not self._closed:
            self._sweep_delay = min(self._sweep_delay * 2, _SWEEP_MAX_SECONDS)
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self._sweep_delay, self._check_failures)

    def close(self) -> None:
        """Drop the infer requests and the compiled model."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(InferenceFailed("Model version is unloaded"))
        self._waiters.clear()
        for slot in self._slots:
            slot.complete = None
            if slot.future is not None and not slot.future.done():
                slot.future.set_exception(InferenceFailed("Model version is unloaded"))
            with contextlib.suppress(RuntimeError):  # busy: its callback now does nothing
                slot.request.set_callback(_noop, None)
        self._slots = []
        self._free = []
        self._inline = False
        self._inline_request = None
        self._inline_owned = {}
        self._compiled = None
