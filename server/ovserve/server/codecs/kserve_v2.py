"""KServe v2 (Open Inference Protocol) REST codec, with OVMS's texts and checks.

Pure functions over bytes and numpy, called by :mod:`ovserve.server.http.kserve` (the handler
passes the ``Inference-Header-Content-Length`` header value and writes what ``encode_*`` returns).

Infer request, JSON form (``data`` may be flat or nested; only the element count is checked)::

    {"id": "42", "parameters": {"binary_data_output": false},
     "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [[1.0, 2.0, 3.0]]}],
     "outputs": [{"name": "y", "parameters": {"binary_data": true}}]}

Binary extension: the header ``Inference-Header-Content-Length: <n>`` says the first ``n`` bytes
of the body are the JSON; each input without ``data`` takes its raw little-endian bytes, in input
order, from the rest. ``parameters.binary_data_size`` gives that length; without it the length is
``prod(shape) * itemsize`` (a lone BYTES input takes the whole rest)::

    {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": 12}}]}<12 raw bytes>

BYTES tensors are JSON strings in ``data``, or in binary form each item is a 4-byte little-endian
length followed by the bytes. FP16 and BF16 travel only in binary form (BF16 as raw 2-byte words).

Infer response (``model_version`` is a string; ``id`` is echoed when the request had one)::

    {"model_name": "m", "id": "42", "model_version": "1",
     "outputs": [{"name": "y", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5]}]}

An output sent in binary form carries ``"parameters": {"binary_data_size": <n>}`` and no
``data``; its bytes follow the JSON in output order and :func:`encode_infer` returns the JSON
length for the response's ``Inference-Header-Content-Length`` header. An output is binary when
its ``outputs[]`` entry says ``"binary_data": true``, else when the request-level
``binary_data_output`` is true. Unlike OVMS, ``binary_data_output`` also applies when the request
lists no outputs (as the KServe spec and Triton do), and ``outputs[]`` filters the response (OVMS
returns every output); an unknown requested name fails with
``Missing output with specific name - Required output: <name>`` before inference.

Raw binary request (Triton's extension): ``Inference-Header-Content-Length: 0`` and a body that
is the raw bytes of the model's single input; :func:`decode_raw` takes the shape from the model
(see there) and asks for binary outputs. One output requested twice is refused with OVMS's
``Cannot insert more than one tensor with the same name``.

Model metadata and errors::

    {"name": "m", "versions": ["1"], "platform": "OpenVINO",
     "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}], "outputs": [...]}
    {"error": "Model with requested name is not found"}

Differences from OVMS worth knowing: floats are written as the shortest text that round-trips the
tensor's own precision (OVMS widens float32 to double, so 0.1f prints as 0.10000000149011612);
NaN and infinities become ``null``; FP16 outputs are written as JSON numbers (OVMS refuses
them); non-UTF-8 BYTES in JSON outputs are decoded with replacement characters (use binary
outputs for exact bytes); a JSON bool inside a numeric ``data`` array reads as 0/1, and
INT64/UINT64 JSON values may use their full range (OVMS refuses both); an oversized
``Inference-Header-Content-Length`` is an :class:`InvalidInput` (OVMS answers 500). Decoded
arrays may be read-only views into the request body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson

from ..errors import InferenceFailed, InvalidInput, InvalidJson
from ..types import Signature, TensorSpec
from . import dtypes, numjson
from .rapidjson_errors import invalid_json_text

HEADER_LENGTH = "Inference-Header-Content-Length"

NOT_OBJECT = "Request body should be JSON object"
MISSING_INPUTS = "Invalid JSON structure, missing inputs"
PARSE_INPUT = "Could not parse input content. Not valid ndarray detected"
UNSUPPORTED = "Could not parse input content. Unsupported data precision detected"
PARSE_OUTPUT = "Could not parse output content."
PARSE_PARAMETERS = "Could not parse request parameters"
BOTH_DATA = "Request contains values both in binary data and in content value"
BUFFER_EXCEEDED = "Received buffer size is smaller than binary_data_size parameter indicates"
HEADER_EXCEEDED = "Inference-Header-Content-Length header exceeds actual payload length"
BINARY_SIZE_INVALID = "binary_data_size parameter is invalid and cannot be parsed"
DOUBLE_TENSOR = "Cannot insert more than one tensor with the same name"
INVALID_CONTENT_SIZE = "Invalid content size of tensor proto"

Param = str | int | bool

# numpy kinds a JSON array may hold for each datatype (FP16/BF16 are binary-only).
_JSON_KINDS = {
    "BOOL": "b", "FP32": "iuf", "FP64": "iuf",
    **{t: "iu" for t in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")},
}


def kserve_datatype(precision: str) -> str:
    """The KServe datatype of an OVMS precision (``FP32`` -> ``FP32``, ``I64`` -> ``INT64``)."""
    return dtypes.kserve_name(precision) or precision


@dataclass
class V2Request:
    """A decoded infer request: inputs in the model's order, plus what the response must honour."""

    id: str | None = None
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    datatypes: dict[str, str] = field(default_factory=dict)  # input name -> requested datatype
    requested_outputs: list[str] | None = None  # None: every output, in model order
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # explicit per-output binary_data
    binary_data_output: bool = False
    parameters: dict[str, Param] = field(default_factory=dict)

    def wants_binary(self, name: str) -> bool:
        return self.binary_outputs.get(name, self.binary_data_output)


@dataclass
class _Input:
    name: str
    shape: tuple[int, ...]
    datatype: str
    parameters: dict[str, Param]
    values: np.ndarray | None  # flat, from JSON "data"; None when the bytes come in binary form
    raw: memoryview | None = None


def decode_infer(body: bytes | bytearray, header_length: int | None, signature: Signature) -> V2Request:
    """Parse an infer body (JSON, or JSON + binary tensors) into arrays of the requested types.

    Checks the structure, the binary layout, the input count and names, each input's datatype
    against the model precision and its value count against its shape; shapes against the model
    are left to :func:`ovserve.server.types.validate_inputs`.
    """
    end = len(body) if header_length is None else header_length
    if end > len(body) or end < 0:
        raise InvalidInput(HEADER_EXCEEDED)
    view = memoryview(body)
    # a large pure-JSON body: its big numeric "data" arrays are read by numjson
    loaded = numjson.load(body) if end == len(body) else None
    doc = loaded[0] if loaded is not None else _loads(view[:end])
    if not isinstance(doc, dict):
        raise InvalidInput(NOT_OBJECT)
    request = V2Request()
    if "id" in doc:
        if not isinstance(doc["id"], str):
            raise InvalidInput(PARSE_INPUT)
        request.id = doc["id"]
    if "parameters" in doc:
        request.parameters = _parameters(doc["parameters"])
        flag = request.parameters.get("binary_data_output")
        request.binary_data_output = flag if isinstance(flag, bool) else False
    if "outputs" in doc:
        _requested_outputs(doc["outputs"], request, signature)
    raw_inputs = doc.get("inputs")
    if raw_inputs is None:
        raise InvalidInput(MISSING_INPUTS)
    if not isinstance(raw_inputs, list):
        raise InvalidInput(PARSE_INPUT)
    if not raw_inputs:
        raise InvalidInput(MISSING_INPUTS)
    entries = [_parse_input(item, len(raw_inputs) == 1) for item in raw_inputs]
    _take_binary(entries, view[end:])
    _check_names(entries, signature)
    by_name = {entry.name: entry for entry in entries}
    for spec in signature.inputs:
        entry = by_name[spec.name]
        _check_precision(entry, spec)
        request.inputs[spec.name] = _to_array(entry)
        request.datatypes[spec.name] = entry.datatype
    return request


def decode_raw(body: bytes | bytearray, signature: Signature, model_name: str) -> V2Request:
    """A "raw binary request" (``Inference-Header-Content-Length: 0``): the whole body is the
    bytes of the model's single input, as Triton's binary tensor data extension defines it.

    The datatype is the input's own. The shape is the model's: a dynamic first dimension is 1
    when another dimension is dynamic too (a batch of one), and the one dynamic dimension left
    is deduced from the body's size; a BYTES (STRING) input takes the whole body as one
    element. Outputs are answered in binary form, as Triton answers such requests (the JSON
    header's length in ``Inference-Header-Content-Length``). Texts of the refusals are
    Triton's, or OVMS's for a size that does not fit."""
    if len(signature.inputs) != 1:
        raise InvalidInput(
            f"Raw request must only have 1 input (found 1) to be deduced but got "
            f"{len(signature.inputs)} inputs in '{model_name}' model configuration"
        )
    spec = signature.inputs[0]
    dims = [d.min if d.is_static else -1 for d in spec.shape] if spec.shape is not None else [-1]
    if dims.count(-1) > 1 and dims[0] == -1:
        dims[0] = 1
    if dims.count(-1) > 1:
        raise InvalidInput(
            f"The shape of the raw input '{spec.name}' can not be deduced because there are "
            "more than one variable-sized dimension"
        )
    datatype = kserve_datatype(spec.precision)
    request = V2Request(binary_data_output=True)
    request.datatypes[spec.name] = datatype
    if spec.precision == "STRING":
        shape = tuple(1 if d == -1 else d for d in dims)
        if _count(shape) != 1:
            raise InvalidInput(
                f"{INVALID_CONTENT_SIZE} - a raw BYTES request is one element, the input "
                f"{spec.name} takes {_count(shape)}"
            )
        array = np.empty(1, dtype=object)
        array[0] = bytes(body)
        request.inputs[spec.name] = array.reshape(shape)
        return request
    itemsize = spec.dtype.itemsize
    fixed = _count(tuple(d for d in dims if d != -1)) * itemsize
    if -1 in dims:
        if fixed == 0 or len(body) % fixed:
            raise InvalidInput(
                f"{INVALID_CONTENT_SIZE} - Expected: a multiple of {fixed} bytes; "
                f"Actual: {len(body)} bytes; input name: {spec.name}"
            )
        dims[dims.index(-1)] = len(body) // fixed
    elif len(body) != fixed:
        raise InvalidInput(
            f"{INVALID_CONTENT_SIZE} - Expected: {fixed} bytes; Actual: {len(body)} bytes; "
            f"input name: {spec.name}"
        )
    request.inputs[spec.name] = np.frombuffer(body, dtype=spec.dtype.newbyteorder("<")
                                              ).reshape(dims)
    return request


def encode_infer(
    model_name: str, version: int, outputs: Mapping[str, np.ndarray], request: V2Request
) -> tuple[bytes, int | None]:
    """The response body, and the JSON length when any output is binary (else ``None``)."""
    names = request.requested_outputs if request.requested_outputs is not None else list(outputs)
    items: list[dict[str, Any]] = []
    blobs: list[bytes | memoryview] = []
    for name in names:
        if name not in outputs:
            raise InvalidInput(f"Missing output with specific name - Required output: {name}")
        array = np.asarray(outputs[name])
        datatype = _datatype_of(array)
        item: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if request.wants_binary(name):
            blob = _binary_of(array, datatype)
            item["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            item["data"] = _json_of(array, datatype)
        items.append(item)
    doc: dict[str, Any] = {"model_name": model_name}
    if request.id:
        doc["id"] = request.id
    doc["model_version"] = str(version)
    doc["outputs"] = items
    head = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)


def encode_model_metadata(name: str, versions: list[int], signature: Signature) -> bytes:
    """``GET /v2/models/{m}[/versions/{v}]``: dynamic dimensions (and ranges) show as -1."""
    return orjson.dumps(
        {
            "name": name,
            "versions": [str(v) for v in versions],
            "platform": "OpenVINO",
            "inputs": [_tensor_metadata(spec) for spec in signature.inputs],
            "outputs": [_tensor_metadata(spec) for spec in signature.outputs],
        }
    )


def encode_server_metadata(version: str, name: str = "ovserve") -> bytes:
    """``GET /v2``. OVMS answers ``{"name":"OpenVINO Model Server","version":...}``; we name
    ourselves (pass ``name`` to imitate OVMS) and list the extension we implement, as the
    KServe spec asks."""
    return orjson.dumps({"name": name, "version": version, "extensions": ["binary_tensor_data"]})


def encode_error(message: str) -> bytes:
    """``{"error":"<message>"}``, compact, as OVMS writes it."""
    return orjson.dumps({"error": message})


# ---------------------------------------------------------------------------------- decoding


def _loads(data: memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(invalid_json_text(exc, bytes(data))) from None


def _parameters(node: Any) -> dict[str, Param]:
    if not isinstance(node, dict):
        raise InvalidInput(PARSE_PARAMETERS)
    for value in node.values():
        if not isinstance(value, str | int | bool):  # bool is an int; floats/null/objects fail
            raise InvalidInput(PARSE_PARAMETERS)
    return dict(node)


def _requested_outputs(node: Any, request: V2Request, signature: Signature) -> None:
    if not isinstance(node, list):
        raise InvalidInput(PARSE_INPUT)
    names: list[str] = []
    for item in node:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(PARSE_OUTPUT)
        name: str = item["name"]
        if "parameters" in item:
            flag = _parameters(item["parameters"]).get("binary_data")
            if isinstance(flag, bool):
                request.binary_outputs[name] = flag
        if name in names:  # OVMS's text for a tensor named twice
            raise InvalidInput(f"{DOUBLE_TENSOR} - requested output: {name}")
        names.append(name)
    for name in names:
        if signature.output(name) is None:
            raise InvalidInput(f"Missing output with specific name - Required output: {name}")
    request.requested_outputs = names


def _parse_input(node: Any, only_one: bool) -> _Input:
    if not isinstance(node, dict) or not isinstance(node.get("name"), str):
        raise InvalidInput(PARSE_INPUT)
    shape = node.get("shape")
    if not isinstance(shape, list) or not all(
        type(d) is int and d >= 0 for d in shape  # bool is not a dimension
    ):
        raise InvalidInput(PARSE_INPUT)
    datatype = node.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(PARSE_INPUT)
    parameters = _parameters(node["parameters"]) if "parameters" in node else {}
    entry = _Input(node["name"], tuple(shape), datatype, parameters, None)
    if "data" in node:
        data = node["data"]  # a list, or the array numjson read from a large body
        if not isinstance(data, list | np.ndarray):
            raise InvalidInput(PARSE_INPUT)
        if len(data):  # OVMS treats an empty "data" as absent: the bytes then come in binary form
            entry.values = _json_values(data, datatype)
            return entry
    if "binary_data_size" not in parameters and datatype == "BYTES" and (
        not only_one or shape != [1]
    ):
        raise InvalidInput(PARSE_INPUT)  # a BYTES size cannot be computed from the shape
    return entry


def _json_values(data: list[Any] | np.ndarray, datatype: str) -> np.ndarray:
    """A flat array of ``datatype`` from JSON ``data``, with OVMS's per-element type rules."""
    if datatype == "BYTES":
        if isinstance(data, np.ndarray):  # numbers (int64 or float64), never strings
            raise InvalidInput(PARSE_INPUT)
        flat = _flatten(data)
        if not all(isinstance(v, str) for v in flat):
            raise InvalidInput(PARSE_INPUT)
        out = np.empty(len(flat), dtype=object)
        out[:] = [v.encode() for v in flat]
        return out
    kinds = _JSON_KINDS.get(datatype)
    if kinds is None:
        raise InvalidInput(UNSUPPORTED)
    if isinstance(data, np.ndarray):
        array = data
    else:
        try:
            array = np.array(data)
        except ValueError:  # ragged nesting: OVMS only counts elements
            array = np.array(_flatten(data))
    if array.size == 0:
        return np.empty(0, dtype=dtypes.BY_KSERVE[datatype].numpy)
    if array.dtype.kind not in kinds:
        raise InvalidInput(PARSE_INPUT)
    target = dtypes.BY_KSERVE[datatype].numpy
    if target.kind in "iu":
        info = np.iinfo(cast("np.dtype[np.integer[Any]]", target))
        if array.min() < info.min or array.max() > info.max:
            raise InvalidInput(PARSE_INPUT)
    return array.reshape(-1).astype(target, copy=False)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _take_binary(entries: list[_Input], buffer: memoryview) -> None:
    """Hand each input without JSON data its slice of the bytes after the JSON, in order."""
    offset = 0
    for entry in entries:
        size_param = entry.parameters.get("binary_data_size")
        if "binary_data_size" in entry.parameters:
            if entry.values is not None:
                raise InvalidInput(BOTH_DATA)
            if type(size_param) is not int or size_param < 0:
                raise InvalidInput(BINARY_SIZE_INVALID)
            size = size_param
        elif entry.values is not None:
            continue
        elif len(entries) == 1 and entry.datatype == "BYTES":
            size = len(buffer)
        else:
            itemsize = dtypes.kserve_itemsize(entry.datatype) or 0
            size = _count(entry.shape) * itemsize
        if offset + size > len(buffer):
            raise InvalidInput(BUFFER_EXCEEDED)
        entry.raw = buffer[offset : offset + size]
        offset += size


def _check_names(entries: list[_Input], signature: Signature) -> None:
    if len(entries) != len(signature.inputs):
        raise InvalidInput(
            f"Invalid number of inputs - Expected: {len(signature.inputs)}; Actual: {len(entries)}"
        )
    names = {entry.name for entry in entries}
    for spec in signature.inputs:
        if spec.name not in names:
            raise InvalidInput(f"Missing input with specific name - Required input: {spec.name}")


def _check_precision(entry: _Input, spec: TensorSpec) -> None:
    if entry.datatype == kserve_datatype(spec.precision):
        return
    # BYTES aimed at a 4-D/5-D numeric input are encoded images (decoded by images.prepare_inputs)
    if entry.datatype == "BYTES" and (spec.shape is None or len(spec.shape) in (4, 5)):
        return
    raise InvalidInput(
        f"Invalid input precision - Expected: {spec.precision}; Actual: {entry.datatype}; "
        f"input name: {entry.name}"
    )


def _to_array(entry: _Input) -> np.ndarray:
    expected = _count(entry.shape)
    if entry.values is not None:
        values = entry.values
    elif entry.datatype == "BYTES":
        assert entry.raw is not None
        values = _split_bytes(entry.raw, entry.name)
    else:
        assert entry.raw is not None
        dtype = dtypes.BY_KSERVE[entry.datatype].numpy
        if len(entry.raw) != expected * dtype.itemsize:
            raise InvalidInput(
                f"Invalid content size of tensor proto - Expected: {expected * dtype.itemsize} "
                f"bytes; Actual: {len(entry.raw)} bytes; input name: {entry.name}"
            )
        return np.frombuffer(entry.raw, dtype=dtype, count=expected).reshape(entry.shape)
    if values.size != expected:
        raise InvalidInput(
            "Invalid number of values in tensor proto container - "
            f"Expected: {expected} values; Actual: {values.size} values; input name: {entry.name}"
        )
    return values.reshape(entry.shape)


def _split_bytes(raw: memoryview, name: str) -> np.ndarray:
    """BYTES in binary form: ``<u32 little-endian length><bytes>`` repeated."""
    items: list[bytes] = []
    offset, size = 0, len(raw)
    while offset + 4 <= size:
        length = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + length > size:
            raise InvalidInput(
                "Invalid content size of tensor proto - Batch length metadata exceeded buffer "
                f"size, buffer size: {size}, batch length: {length}; input name: {name}"
            )
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    if offset != size:
        raise InvalidInput(
            f"Invalid content size of tensor proto - Processed bytes: {offset} do not equal to "
            f"buffer size: {size}; input name: {name}"
        )
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


# ---------------------------------------------------------------------------------- encoding


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": kserve_datatype(spec.precision),
            "shape": spec.shape_ints()}


def _datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "BYTES"
    precision = dtypes.precision_from_numpy(array.dtype.newbyteorder("="))
    datatype = dtypes.kserve_name(precision) if precision is not None else None
    if datatype is None:
        raise InferenceFailed(f"Unsupported output data type {array.dtype}")
    return datatype


def _native(array: np.ndarray) -> np.ndarray:
    """C-contiguous, native byte order, 1-D."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return np.ascontiguousarray(array).reshape(-1)


def _items(array: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]


def _json_of(array: np.ndarray, datatype: str) -> Any:
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") for v in _items(array)]
    return _native(array)


def _binary_of(array: np.ndarray, datatype: str) -> bytes | memoryview:
    if datatype == "BYTES":
        return b"".join(len(v).to_bytes(4, "little") + v for v in _items(array))
    return _native(array).data.cast("B")
