"""The OpenVINO backend: loads a model version folder into an :class:`OpenVINOModel`.

With :mod:`.openvino_model`, the only modules of the server that import :mod:`openvino`. The
manager creates one :class:`OpenVINOBackend` (``cli.py`` passes ``--cache_dir``) and calls
:meth:`~OpenVINOBackend.load` for every version it starts, in an executor (reading and
compiling block)::

    backend = OpenVINOBackend(cache_dir="/opt/cache")
    model = backend.load("/models/resnet/1", model_config)     # raises ModelLoadError(text)
    outputs = await model.infer({"x": array}, timing)           # dict name -> numpy, output order
    model.close()

Loading follows OVMS (``modelinstance.cpp``): find the model file (IR ``*.xml`` + ``*.bin`` or
``*.onnx``), apply ``layout`` with a ``PrePostProcessor`` (``"NHWC:NCHW"`` = served:model, adding
a transpose), then ``shape`` (given in the served layout) or else ``batch_size``, then compile
for ``target_device`` with ``plugin_config`` (+ ``CACHE_DIR`` when caching is on).

The loaded model, its infer-request pool and the non-blocking ``infer`` are in
:mod:`.openvino_model`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import PrePostProcessor

from ..config import ModelConfig, parse_shape
from ..errors import ModelLoadError
from ..types import Dim, Signature, TensorSpec
from .auto_shape import AutoShapeModel
from .mapping import MAPPING_FILE, read_mapping, served_names
from .openvino_model import OpenVINOModel, first_line, ov_message

log = logging.getLogger(__name__)

__all__ = ["AutoShapeModel", "OpenVINOBackend", "OpenVINOModel", "find_model_file",
           "save_sum_model"]

# OpenVINO element type names -> OVMS precision names.
_PRECISIONS: dict[str, str] = {
    "f32": "FP32", "f16": "FP16", "bf16": "BF16", "f64": "FP64",
    "i8": "I8", "i16": "I16", "i32": "I32", "i64": "I64",
    "u8": "U8", "u16": "U16", "u32": "U32", "u64": "U64",
    "boolean": "BOOL", "string": "STRING",
}
# Legacy OVMS plugin_config keys that current OpenVINO names differently.
_LEGACY_KEYS = {"CPU_THROUGHPUT_STREAMS": "NUM_STREAMS", "GPU_THROUGHPUT_STREAMS": "NUM_STREAMS"}
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


def _find(ports: Any, served: list[str], name: str, setting: str) -> list[int]:
    """Indexes of the ports ``name`` designates in a ``shape`` / ``layout`` setting: by served
    name (``mapping_config.json``), or by own name for a port the mapping does not rename."""
    found = [i for i, p in enumerate(ports)
             if served[i] == name or (served[i] == _any_name(p) and name in _port_names(p))]
    if not found:
        renamed = [served[i] for i, p in enumerate(ports)
                   if served[i] != _any_name(p) and name in _port_names(p)]
        if renamed:
            raise ModelLoadError(  # OVMS's text, with the names
                f"{setting} from config has real name. Use mapped name instead - {name} is "
                f"mapped to {renamed[0]} by {MAPPING_FILE}"
            )
    return found


def _split_layout(text: str) -> tuple[str, str]:
    served, _, model = text.partition(":")
    return served, model or served


def _apply_layout(model: Any, layout: str | dict[str, str] | None,
                  names: tuple[list[str], list[str]]) -> Any:
    if layout is None:
        return model
    ppp = PrePostProcessor(model)
    if isinstance(layout, str):
        targets = [("in", i, layout) for i in range(len(model.inputs))]
    else:
        targets = []
        for name, text in layout.items():
            ins = _find(model.inputs, names[0], name, "Layout")
            outs = _find(model.outputs, names[1], name, "Layout")
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


def _apply_shape(model: Any, shape: str | dict[str, str], served: list[str]) -> None:
    wanted: dict[int, Any] = {}
    if isinstance(shape, str):
        if shape != "auto":
            wanted = {i: _partial_shape(shape) for i in range(len(model.inputs))}
    else:
        for name, text in shape.items():
            idx = _find(model.inputs, served, name, "Shape")
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


def _spec(port: Any, layout_port: Any, name: str) -> TensorSpec:
    etype = port.get_element_type().get_type_name()
    precision = _PRECISIONS.get(etype)
    if precision is None:
        raise ModelLoadError(f"Unsupported precision {etype} of tensor {_any_name(port)}")
    return TensorSpec(name, precision, _dims(port), _layout_text(layout_port))


# ---------------------------------------------------------------- the backend


class OpenVINOBackend:
    """Reads and compiles models with one ``ov.Core``; see the module docstring."""

    def __init__(self, core: ov.Core | None = None, cache_dir: str | None = None) -> None:
        self._core = core if core is not None else ov.Core()
        self._cache_dir = cache_dir

    def load(self, version_dir: str, config: ModelConfig) -> OpenVINOModel | AutoShapeModel:
        """Read, configure and compile the model in ``version_dir``. Blocking.

        Tensor names follow the folder's ``mapping_config.json`` (:mod:`.mapping`). With
        ``shape: "auto"`` (for all inputs or some) or ``batch_size: "auto"`` the model keeps its
        own shape and the result is an :class:`~.auto_shape.AutoShapeModel`, which reshapes it
        to the requests that need another one."""
        path = find_model_file(version_dir)
        try:
            model = self._core.read_model(path)
        except RuntimeError as exc:
            raise ModelLoadError(f"Cannot read model {path}: {ov_message(exc)}") from None
        mapping = read_mapping(version_dir)
        where = os.path.join(version_dir, MAPPING_FILE)
        names = (
            served_names([_any_name(p) for p in model.inputs], mapping.inputs, "inputs", where),
            served_names([_any_name(p) for p in model.outputs], mapping.outputs, "outputs", where),
        )
        model = _apply_layout(model, config.layout, names)
        auto: dict[int, bool] = {}  # input index -> True: whole shape auto, False: batch only
        if config.shape is not None:
            if config.batch_size is not None:
                log.warning("Model %s: batch_size is ignored because shape is set", config.name)
            _apply_shape(model, config.shape, names[0])
            if config.shape == "auto":
                auto = dict.fromkeys(range(len(model.inputs)), True)
            elif isinstance(config.shape, dict):
                for name, text in config.shape.items():
                    if text == "auto":
                        auto.update(dict.fromkeys(_find(model.inputs, names[0], name, "Shape"),
                                                  True))
        elif config.batch_size == "auto":
            auto = {i: False for i, p in enumerate(model.inputs)
                    if p.get_partial_shape().rank.is_static
                    and p.get_partial_shape().rank.get_length() > 0}
        elif config.batch_size is not None:
            _apply_batch(model, config.batch_size)
        label = f"{config.name} version {os.path.basename(os.path.normpath(version_dir))}"
        loaded = self._compile_loaded(model, config, names, label)
        log.info("Loaded %s on %s: nireq %d, streams %d", path, config.target_device,
                 loaded.nireq, loaded.streams)
        if not auto:
            return loaded

        building = threading.Lock()  # model.reshape changes ``model``: one build at a time

        def build(shapes: Mapping[int, Sequence[int]]) -> OpenVINOModel:
            """Reshape ``model`` and compile it again (in a worker thread)."""
            with building:
                return self._reshaped(model, shapes, config, names, label)

        return AutoShapeModel(loaded, build, auto, label=label)

    def _reshaped(self, model: Any, shapes: Mapping[int, Sequence[int]], config: ModelConfig,
                  names: tuple[list[str], list[str]], label: str) -> OpenVINOModel:
        """``model`` reshaped to ``shapes`` (input index -> dims, -1 dynamic) and compiled."""
        try:
            model.reshape({model.inputs[i]: ov.PartialShape(list(dims))
                           for i, dims in shapes.items()})
        except RuntimeError as exc:
            raise ModelLoadError(ov_message(exc)) from None
        return self._compile_loaded(model, config, names, label)

    def _compile_loaded(self, model: Any, config: ModelConfig,
                        names: tuple[list[str], list[str]], label: str) -> OpenVINOModel:
        """Compile ``model`` and wrap it in an :class:`OpenVINOModel` (calibrated)."""
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
            tuple(_spec(c, m, n) for c, m, n in
                  zip(compiled.inputs, model.inputs, names[0], strict=True)),
            tuple(_spec(c, m, n) for c, m, n in
                  zip(compiled.outputs, model.outputs, names[1], strict=True)),
        )
        loaded = OpenVINOModel(compiled, signature, nireq=nireq, streams=streams, label=label)
        spent = loaded.calibrate()
        if spent is not None:
            log.debug("%s: one inference on zeros took %.0f us (%s)", label, spent,
                      "inline for small requests" if loaded.inline else "infer request pool")
        return loaded

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
                    f"Plugin config is in wrong format: {first_line(error)}"
                ) from None
        raise ModelLoadError(
            f"Cannot compile model into target device: {device} - {first_line(error)}"
        ) from None

    @staticmethod
    def _optimal_nireq(compiled: Any) -> int:
        try:
            return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except (RuntimeError, TypeError, ValueError):
            return 1
