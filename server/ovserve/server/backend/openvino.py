"""The OpenVINO backend: loads a model version folder and runs inferences without blocking asyncio.

This is the only module of the server that imports :mod:`openvino`. The manager creates one
:class:`OpenVINOBackend` (``cli.py`` passes ``--cache_dir``) and calls :meth:`~OpenVINOBackend.load`
for every version it starts, in an executor because reading and compiling block::

    backend = OpenVINOBackend(cache_dir="/opt/cache")
    model = backend.load("/models/resnet/1", model_config)     # raises ModelLoadError(text)
    outputs = await model.infer({"x": array}, timing)           # dict name -> numpy, output order
    model.close()

Loading follows OVMS (``modelinstance.cpp``): find the model file (IR ``*.xml`` + ``*.bin`` or
``*.onnx``), apply ``layout`` with a ``PrePostProcessor`` (``"NHWC:NCHW"`` = served:model, adding
a transpose), then ``shape`` (given in the served layout) or else ``batch_size``, then compile
for ``target_device`` with ``plugin_config`` (+ ``CACHE_DIR`` when caching is on).

Inference keeps a pool of ``nireq`` infer requests. A call takes a free one (or waits on an
asyncio future, never blocking the loop), sets zero-copy input tensors, calls ``start_async``
and awaits a future that the request's completion callback resolves from the OpenVINO thread via
``loop.call_soon_threadsafe``. OpenVINO's Python binding does not call the callback when an
inference fails, so while requests run a light sweep (every few milliseconds) polls
``wait_for(0)`` on them, which raises the failure; the error becomes ``InferenceFailed``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import time
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from ..config import ModelConfig, parse_shape
from ..errors import InferenceFailed, InvalidInput, ModelLoadError
from ..types import BF16_CARRIER, Dim, Signature, TensorSpec
from .base import InferTiming

log = logging.getLogger(__name__)

__all__ = ["OpenVINOBackend", "OpenVINOModel", "find_model_file", "save_sum_model"]

# OpenVINO element type names -> OVMS precision names.
_PRECISIONS: dict[str, str] = {
    "f32": "FP32", "f16": "FP16", "bf16": "BF16", "f64": "FP64",
    "i8": "I8", "i16": "I16", "i32": "I32", "i64": "I64",
    "u8": "U8", "u16": "U16", "u32": "U32", "u64": "U64",
    "boolean": "BOOL", "string": "STRING",
}
# Legacy OVMS plugin_config keys that current OpenVINO names differently.
_LEGACY_KEYS = {"CPU_THROUGHPUT_STREAMS": "NUM_STREAMS", "GPU_THROUGHPUT_STREAMS": "NUM_STREAMS"}
_FROM = re.compile(r"(?:Caught exception:\s*)?Exception from \S+:\d+:\s*")
_WHERE = re.compile(r"\s+at \S+\.(?:cpp|hpp|h):\d+:?")
_Tensor = ov.Tensor
_SWEEP_SECONDS = 0.005
_SWEEP_MAX_SECONDS = 0.2

# Per-tensor conversion kinds (decided once at load time, used on the hot path).
_PLAIN, _BF16, _STRING = 0, 1, 2
_KINDS = {"BF16": _BF16, "STRING": _STRING}


def _clean_lines(exc: BaseException) -> list[str]:
    lines = (_WHERE.sub(":", _FROM.sub("", ln)).strip() for ln in str(exc).splitlines())
    return [ln for ln in lines if ln]


def ov_message(exc: BaseException) -> str:
    """OpenVINO's error text without its ``Exception from src/...cpp:N:`` location noise."""
    return " ".join(_clean_lines(exc)) or type(exc).__name__


def _first_line(exc: BaseException) -> str:
    return next(iter(_clean_lines(exc)), type(exc).__name__)


# ---------------------------------------------------------------- finding and building models


def find_model_file(version_dir: str) -> str:
    """The one model file in ``version_dir``: ``X.xml`` with ``X.bin`` beside it, or ``X.onnx``."""
    try:
        files = {n for n in os.listdir(version_dir) if os.path.isfile(os.path.join(version_dir, n))}
    except OSError as exc:
        raise ModelLoadError(f"Cannot read model folder {version_dir}: {exc.strerror}") from None
    found: list[str] = []
    orphans: list[str] = []  # read_model looks for the weights at exactly <stem>.bin
    for name in sorted(files):
        stem, ext = os.path.splitext(name)
        if ext.lower() == ".xml":
            (found if stem + ".bin" in files else orphans).append(name)
        elif ext.lower() == ".onnx":
            found.append(name)
    if len(found) == 1:
        return os.path.join(version_dir, found[0])
    if len(found) > 1:
        raise ModelLoadError(
            f"Several model files found in {version_dir}: {', '.join(found)}; "
            "keep exactly one model (*.xml + *.bin or *.onnx) per version folder"
        )
    if orphans:
        raise ModelLoadError(
            f"Model file {orphans[0]} in {version_dir} has no matching "
            f"{os.path.splitext(orphans[0])[0]}.bin weights file"
        )
    raise ModelLoadError(
        f"No model found in {version_dir}: expected an OpenVINO IR (*.xml + *.bin) "
        "or an ONNX (*.onnx) file"
    )


def save_sum_model(xml_path: str, inputs: tuple[str, str] = ("a", "b"),
                   output: str = "sum", width: int = 4) -> None:
    """Write an IR computing ``output = a + b`` over float32 ``[-1, width]`` (the demo model)."""
    from openvino import opset13 as ops

    a = ops.parameter([-1, width], np.float32, name=inputs[0])
    b = ops.parameter([-1, width], np.float32, name=inputs[1])
    out = ops.add(a, b)
    out.output(0).set_names({output})
    ov.save_model(ov.Model([out], [a, b], "sum"), xml_path, compress_to_fp16=False)


# ---------------------------------------------------------------- applying the config


def _port_names(port: Any) -> set[str]:
    return set(port.get_names()) or {port.get_node().get_friendly_name()}


def _any_name(port: Any) -> str:
    names = port.get_names()
    return str(port.get_any_name()) if names else str(port.get_node().get_friendly_name())


def _split_layout(text: str) -> tuple[str, str]:
    served, _, model = text.partition(":")
    return served, model or served


def _apply_layout(model: Any, layout: str | dict[str, str] | None) -> Any:
    if layout is None:
        return model
    ppp = PrePostProcessor(model)
    if isinstance(layout, str):
        targets = [("in", i, layout) for i in range(len(model.inputs))]
    else:
        targets = []
        for name, text in layout.items():
            ins = [i for i, p in enumerate(model.inputs) if name in _port_names(p)]
            outs = [i for i, p in enumerate(model.outputs) if name in _port_names(p)]
            if not ins and not outs:
                raise ModelLoadError(f"Layout from config not found in model: {name}")
            targets += [("in", i, text) for i in ins] + [("out", i, text) for i in outs]
    try:
        for kind, index, text in targets:
            served, wanted = _split_layout(text)
            step = ppp.input(index) if kind == "in" else ppp.output(index)
            step.tensor().set_layout(ov.Layout(served))
            step.model().set_layout(ov.Layout(wanted))
        return ppp.build()
    except RuntimeError as exc:
        raise ModelLoadError(f"Cannot apply layout {layout}: {ov_message(exc)}") from None


def _partial_shape(text: str) -> Any:
    dims = [
        ov.Dimension(-1) if hi == -1 else ov.Dimension(lo) if lo == hi else ov.Dimension(lo, hi)
        for lo, hi in parse_shape(text)
    ]
    return ov.PartialShape(dims)


def _apply_shape(model: Any, shape: str | dict[str, str]) -> None:
    wanted: dict[int, Any] = {}
    if isinstance(shape, str):
        if shape != "auto":
            wanted = {i: _partial_shape(shape) for i in range(len(model.inputs))}
    else:
        for name, text in shape.items():
            idx = [i for i, p in enumerate(model.inputs) if name in _port_names(p)]
            if not idx:
                raise ModelLoadError(f"Shape from config not found in model: {name}")
            if text != "auto":
                wanted[idx[0]] = _partial_shape(text)
    if not wanted:
        return
    try:
        model.reshape({model.inputs[i]: s for i, s in wanted.items()})
    except RuntimeError as exc:
        raise ModelLoadError(
            f"Model could not be reshaped with requested shape {shape}: {ov_message(exc)}"
        ) from None


def _apply_batch(model: Any, batch: int | str) -> None:
    dim = ov.Dimension(-1) if batch == "auto" else ov.Dimension(int(batch))
    try:
        ov.set_batch(model, dim)
        return
    except RuntimeError:
        pass  # no input has a layout with N: use dimension 0 of every input instead
    shapes = {}
    for port in model.inputs:
        ps = port.get_partial_shape()
        if ps.rank.is_static and ps.rank.get_length() > 0:
            dims = list(ps)
            dims[0] = dim
            shapes[port] = ov.PartialShape(dims)
    try:
        model.reshape(shapes)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"Model could not be reshaped with requested batch size {batch}: {ov_message(exc)}"
        ) from None


def _plugin_properties(plugin_config: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for key, value in plugin_config.items():
        if key in _LEGACY_KEYS:
            key = _LEGACY_KEYS[key]
            if isinstance(value, str) and value.endswith("_THROUGHPUT_AUTO"):
                value = "AUTO"
        props[key] = value
    return props


# ---------------------------------------------------------------- signature


def _dims(port: Any) -> tuple[Dim, ...] | None:
    ps = port.get_partial_shape()
    if ps.rank.is_dynamic:
        return None
    out = []
    for d in ps:
        if d.is_static:
            out.append(Dim.static(d.get_length()))
        else:
            hi = d.get_max_length()
            out.append(Dim(max(d.get_min_length(), 0), -1 if hi < 0 else hi))
    return tuple(out)


def _layout_text(port: Any) -> str:
    layout = ov.layout_helpers.get_layout(port)
    if layout.empty:
        return ""
    parts = layout.to_string().strip("[]").split(",")
    if all(len(p) == 1 or p == "..." for p in parts):
        return "".join(parts)
    return str(layout.to_string())


def _spec(port: Any, layout_port: Any) -> TensorSpec:
    etype = port.get_element_type().get_type_name()
    precision = _PRECISIONS.get(etype)
    if precision is None:
        raise ModelLoadError(f"Unsupported precision {etype} of tensor {_any_name(port)}")
    return TensorSpec(_any_name(port), precision, _dims(port), _layout_text(layout_port))


# ---------------------------------------------------------------- the backend


class OpenVINOBackend:
    """Reads and compiles models with one ``ov.Core``; see the module docstring."""

    def __init__(self, core: ov.Core | None = None, cache_dir: str | None = None) -> None:
        self._core = core if core is not None else ov.Core()
        self._cache_dir = cache_dir

    def load(self, version_dir: str, config: ModelConfig) -> OpenVINOModel:
        """Read, configure and compile the model in ``version_dir``. Blocking."""
        path = find_model_file(version_dir)
        try:
            model = self._core.read_model(path)
        except RuntimeError as exc:
            raise ModelLoadError(f"Cannot read model {path}: {ov_message(exc)}") from None
        model = _apply_layout(model, config.layout)
        if config.shape is not None:
            if config.batch_size is not None:
                log.warning("Model %s: batch_size is ignored because shape is set", config.name)
            _apply_shape(model, config.shape)
        elif config.batch_size is not None:
            _apply_batch(model, config.batch_size)
        props = _plugin_properties(config.plugin_config)
        if self._cache_dir and config.allow_cache:
            props["CACHE_DIR"] = self._cache_dir
        compiled = self._compile(model, config, props)
        nireq = config.nireq or self._optimal_nireq(compiled)
        try:
            streams = max(1, int(compiled.get_property("NUM_STREAMS")))
        except (RuntimeError, TypeError, ValueError):
            streams = 1
        signature = Signature(
            tuple(_spec(c, m) for c, m in zip(compiled.inputs, model.inputs, strict=True)),
            tuple(_spec(c, m) for c, m in zip(compiled.outputs, model.outputs, strict=True)),
        )
        log.info("Loaded %s on %s: nireq %d, streams %d", path, config.target_device, nireq,
                 streams)
        return OpenVINOModel(compiled, signature, nireq=nireq, streams=streams)

    def _compile(self, model: Any, config: ModelConfig, props: dict[str, Any]) -> Any:
        device = config.target_device
        try:
            return self._core.compile_model(model, device, props)
        except (RuntimeError, TypeError) as exc:
            error = exc
        if config.plugin_config:
            # Tell a bad plugin_config from an unusable device: does it compile without it?
            bare = {k: v for k, v in props.items() if k == "CACHE_DIR"}
            try:
                self._core.compile_model(model, device, bare)
            except (RuntimeError, TypeError):
                pass
            else:
                raise ModelLoadError(
                    f"Plugin config is in wrong format: {_first_line(error)}"
                ) from None
        raise ModelLoadError(
            f"Cannot compile model into target device: {device} - {_first_line(error)}"
        ) from None

    @staticmethod
    def _optimal_nireq(compiled: Any) -> int:
        try:
            return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except (RuntimeError, TypeError, ValueError):
            return 1


# ---------------------------------------------------------------- the loaded model


class _Slot:
    """One infer request of the pool and the call currently using it."""

    __slots__ = ("__weakref__", "complete", "future", "inputs", "loop", "request")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.inputs: list[Any] | None = None  # keeps shared input memory alive while running
        self.complete: Any = None


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

    def __init__(self, compiled: Any, signature: Signature, *, nireq: int, streams: int) -> None:
        self.signature = signature
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

    @property
    def active_requests(self) -> int:
        return self._active

    async def infer(
        self, inputs: Mapping[str, np.ndarray], timing: InferTiming | None = None
    ) -> dict[str, np.ndarray]:
        """Run one inference on a free infer request; outputs copied out, in model order."""
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
        self._compiled = None
