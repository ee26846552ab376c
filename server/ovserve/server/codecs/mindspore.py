"""MindSpore-Serving-style REST codec: URL, ``instances`` bodies, batching, replies.

Pure functions, called by :mod:`ovserve.server.http.mindspore`. Every answer of this dialect is
HTTP 200 with a JSON body; failures are ``{"error_msg": "<text>"}`` with MindSpore's texts.

URL (keys found anywhere in the path as MindSpore does, so ``/version/1/model/add:predict``
works; but only as whole path segments, see the differences below)::

    POST /model/{name}[/version/{v}]:{method}      v absent or 0 = latest; method is "predict"

Request: one object per instance (or a single object = one instance). A JSON int is an int32
scalar, a float a float32, ``true``/``false`` a bool, a string a str; nested arrays are tensors
(rectangular, one element type; str arrays hold one item); typed objects carry raw bytes::

    {"instances": [{"x": [[1.0, 2.0], [3.0, 4.0]], "k": 3},
                   {"x": {"b64": "AACAPwAAAEA=", "type": "fp32", "shape": [2]}, "k": 4}]}

Reply: one entry per instance, keys sorted; ints as JSON ints, floats as JSON floats, bools,
STRING outputs as JSON strings (``{"b64": ...}`` for bytes); a failed instance is replaced by
its error; when every instance failed with one error the whole body is that error::

    {"instances": [{"y": [[2.0, 3.0]]}, {"error_msg": "Given model input 0 size 8 not match the
     size 16 defined in model"}]}
    {"error_msg": "Request servable(add) method(predict) , servable is not available"}

Flow for the handler: :func:`parse_url` -> :func:`decode_instances` -> model lookup (failure:
:func:`servable_unavailable`) -> :func:`check_method` ->
:func:`~ovserve.server.codecs.mindspore_batch.batch_instances` -> one infer per ``MsBatch`` ->
:func:`~ovserve.server.codecs.mindspore_batch.collect_results` -> :func:`encode_instances`.

Differences from MindSpore: floats are written as the shortest text that round-trips their own
precision (MindSpore prints float32 as a double); the ``Illegal JSON format.`` detail imitates
nlohmann's message (position exact, wording approximate); a missing input fails the whole
request (as MindSpore's dispatcher does) while size and type errors fail only their instance;
a dynamic model dimension is checked by shape (MindSpore only compares byte sizes), with
``Given model input <i> shape [..] not match the shape [..] defined in model``; the URL keys
``model`` and ``version`` are matched as whole path segments, not as substrings, so a model
named ``versioned`` is reachable (MindSpore reads ``/model/versioned:predict``
as version ``d`` and fails).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, NoReturn

import numpy as np
import orjson

from ..errors import InvalidInput, InvalidJson, RequestTooLarge
from . import dtypes

METHOD = "predict"
PREFIX = "Parser request failed, "
_UINT32_MAX = 4294967295

MsValue = np.ndarray | bytes | str
MsResult = dict[str, np.ndarray] | str

_TEXT = ("str", "bytes")  # MindSpore's text types; both are OpenVINO STRING


def kmsi_name(precision: str | None) -> str:
    """MindSpore's enum name of a type, as its messages print it (``FP32`` -> ``kMSI_Float32``)."""
    name = dtypes.mindspore_name(precision) if precision else None
    return f"kMSI_{name.capitalize()}" if name else "kMSI_Unknown"


TEXT_KMSI = ("kMSI_String", "kMSI_Bytes")


# ---------------------------------------------------------------------------------- URL, dispatch


@dataclass(frozen=True)
class MsTarget:
    name: str
    version: int | None  # None: no version in the URL; 0 also means latest
    method: str


def parse_url(uri: str) -> MsTarget:
    """Parse the raw request URI (path and query, not URL-decoded) as MindSpore's master does."""
    name = _url_query(uri, "model")
    if not name:
        raise InvalidInput("please check url, the keyword:[model] must contain.")
    version: int | None = None
    if _find_key(uri, "version") >= 0:
        text = _url_query(uri, "version")
        match = re.match(r"\s*([+-]?\d+)", text)  # std::stol: leading digits, rest ignored
        if match is None:
            raise InvalidInput(
                f"please check url, the keyword:[version] value invalid, request version number "
                f"{text}"
            )
        version = int(match.group(1))
        if not 0 <= version < _UINT32_MAX:
            raise InvalidInput(
                f"please check url, version number range failed, request version number {text}"
            )
    method = _url_query(uri, ":")
    if not method:
        raise InvalidInput("please check url, the keyword:[service method] must contain.")
    return MsTarget(name, version, method)


def _find_key(url: str, key: str) -> int:
    """Where ``key`` starts as a whole path segment followed by ``/`` (``-1`` if nowhere).

    MindSpore takes the first substring match, so a servable whose name contains ``version``
    (``/model/versioned:predict``) cannot be called there; segments avoid that.
    """
    start = url.find(f"/{key}/")
    if url.startswith(f"{key}/"):
        return 0
    return start + 1 if start >= 0 else -1


def _url_query(url: str, key: str) -> str:
    if key == ":" and ":" in url:
        return url[url.index(":") + 1 :]
    start = _find_key(url, key)
    if start < 0:
        return ""
    begin = start + len(key) + 1
    ends = [p for p in (url.find("/", begin), url.find(":", begin)) if p >= 0]
    return url[begin : min(ends)] if ends else url[begin:]


def _spec_text(target: MsTarget) -> str:
    version = f" version({target.version}) " if target.version else ""
    return f"servable({target.name}) method({target.method}) {version}"


def servable_unavailable(target: MsTarget) -> str:
    """Text for an unknown model or version: ``Request servable(m) method(f) , servable ...``."""
    return f"Request {_spec_text(target)}, servable is not available"


def method_unavailable(target: MsTarget) -> str:
    return f"Request {_spec_text(target)}, method is not available"


def check_method(target: MsTarget) -> None:
    """Every model offers exactly one method, ``predict``."""
    if target.method != METHOD:
        raise InvalidInput(method_unavailable(target))


# ---------------------------------------------------------------------------------- request


def _fail(message: str) -> NoReturn:
    raise InvalidInput(PREFIX + message)


def decode_instances(body: bytes, max_bytes: int) -> list[dict[str, MsValue]]:
    """The request's instances; numeric and bool values as arrays, text as ``str``/``bytes``.

    Raises :class:`InvalidInput`, :class:`RequestTooLarge` past ``max_bytes`` or
    :class:`InvalidJson`; every body-structure text starts with ``Parser request failed, ``.
    """
    if not body:
        raise InvalidInput("http message invalid")
    if len(body) > max_bytes:
        raise RequestTooLarge(f"http message is bigger than {max_bytes}")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(_json_error_text(exc, body)) from None
    if not isinstance(doc, dict) or "instances" not in doc:
        _fail("key 'instances' expects to exist once, but actually 0 times")
    instances = doc["instances"]
    if isinstance(instances, dict):
        if not instances:
            _fail("json object, value is empty")
        return [_instance(instances)]
    if not isinstance(instances, list) or (instances and not isinstance(instances[0], dict)):
        _fail("instances no key mode is not supported")
    if not instances:
        _fail("instances value is array type, but no value")
    out: list[dict[str, MsValue]] = []
    for instance in instances:
        if not isinstance(instance, dict):
            _fail("json array, instance is not object type")
        if not instance:
            _fail("json array, instance is object type, but no value")
        out.append(_instance(instance))
    return out


def _json_error_text(exc: orjson.JSONDecodeError, doc: bytes) -> str:
    """``Illegal JSON format.`` + an nlohmann-style message (position exact, wording close)."""
    pos = exc.pos
    line = doc.count(b"\n", 0, pos) + 1
    column = pos - (doc.rfind(b"\n", 0, pos) + 1)
    if "empty" in exc.msg or "end of data" in exc.msg:
        detail = "unexpected end of input; expected '[', '{', or a literal"
        column += 1
    else:
        token = doc[pos : pos + 1]
        if exc.msg.startswith("invalid literal") and exc.msg.count("'") >= 2:
            literal = exc.msg.split("'")[1].encode()
            matched = 0
            while matched < len(literal) and doc[pos + matched : pos + matched + 1] == literal[
                    matched : matched + 1]:
                matched += 1
            token = doc[pos : pos + matched + 1]
        column += len(token)
        detail = f"invalid literal; last read: '{token.decode('utf-8', 'replace')}'"
    return (
        "Illegal JSON format.[json.exception.parse_error.101] parse error at line "
        f"{line}, column {column}: syntax error while parsing value - {detail}"
    )


def _instance(node: dict[str, Any]) -> dict[str, MsValue]:
    values: dict[str, MsValue] = {}
    for key in sorted(node):  # nlohmann objects iterate in key order
        if not key:
            _fail("string key is empty")
        values[key] = _item(node[key])
    return values


def _item(value: Any) -> MsValue:
    if isinstance(value, dict):
        return _typed_object(value)
    if isinstance(value, list):
        return _array(value)
    if isinstance(value, bool):
        return np.array(value, dtype=np.bool_)
    if isinstance(value, int):
        return np.array(_wrap_int32(value), dtype=np.int32)
    if isinstance(value, float):
        with np.errstate(over="ignore"):
            return np.array(value, dtype=np.float32)
    if isinstance(value, str):
        return value
    _fail("json value is null, it is not supported")


def _wrap_int32(value: int) -> int:
    return (value + 2**31) % 2**32 - 2**31


def _typed_object(node: dict[str, Any]) -> MsValue:
    if not node:
        _fail("json object, value is empty")
    if len(node) > 3:
        _fail("json object, items size is more than 3, only support specified "
              "['b64', 'type', 'shape']")
    for key in sorted(node):
        value = node[key]
        if key == "type":
            if not isinstance(value, str):
                _fail("json object, key is 'type', value should be string type")
            if value not in dtypes.BY_MINDSPORE:
                _fail(f"json object, specified type:'{value}' is illegal")
        elif key == "shape":
            _check_shape(value)
        elif key != "b64":
            _fail(f"json object, key is not ['b64', 'type', 'shape'], fail key:{key}")
    if "b64" not in node:
        _fail("json object, 'b64' should be specified only one time")
    type_name: str = node.get("type", "bytes")
    shape = tuple(node.get("shape", ()))
    if type_name in _TEXT:
        if element_count(shape) != 1:
            _fail(
                "json object, only support scalar when data type is string or bytes, "
                "please check 'type' or 'shape'"
            )
        return _text(_b64(node["b64"]), type_name, shape)
    row = dtypes.BY_MINDSPORE[type_name]
    raw = _b64(node["b64"])
    count = 0 if 0 in shape else element_count(shape)
    if len(raw) != row.itemsize * count:
        _fail(
            f"size is not matched, decode base64 size:{len(raw)}; Given info: "
            f"type:{row.mindspore}; type size:{row.itemsize}; element nums:{count}"
        )
    return np.frombuffer(raw, dtype=row.numpy).reshape(shape)


def _check_shape(value: Any) -> None:
    if not isinstance(value, list):
        _fail("json object, key is 'shape', value should be array type")
    zero_before = False
    for dim in value:
        if zero_before:
            dump = orjson.dumps(value).decode()
            _fail(f"json object, key is 'shape', invalid shape value {dump}")
        if type(dim) is not int or dim < 0:
            _fail("json object, key is 'shape', array value should be unsigned integer")
        zero_before = dim == 0


def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        _fail("get scalar data failed, type is string, but json is not string type")
    if len(value) % 4:
        _fail(f"'{value}' is illegal b64 encode string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        _fail(f"'{value}' is illegal b64 encode string")


def _text(raw: bytes, type_name: str, shape: tuple[int, ...]) -> MsValue:
    value: str | bytes = raw.decode("utf-8", "replace") if type_name == "str" else raw
    if not shape:
        return value
    out = np.empty(1, dtype=object)
    out[0] = value
    return out.reshape(shape)


def element_count(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _leaf_type(leaf: Any) -> str | None:
    """MindSpore's element type of a JSON array: int32/float32/bool/str or an object's type."""
    if isinstance(leaf, bool):
        return "bool"
    if isinstance(leaf, int):
        return "int32"
    if isinstance(leaf, float):
        return "float32"
    if isinstance(leaf, str):
        return "str"
    if isinstance(leaf, dict):
        kind = leaf.get("type", "bytes")
        return kind if isinstance(kind, str) and kind in dtypes.BY_MINDSPORE else None
    return None


_PY_TYPE = {"bool": bool, "int32": int, "float32": float, "str": str}
_KINDS = {"bool": "b", "int32": "iu", "float32": "f"}


def _array(value: list[Any]) -> MsValue:
    shape: list[int] = []
    node: Any = value
    while isinstance(node, list) and node:
        shape.append(len(node))
        node = node[0]
    if not shape:
        _fail("json array, shape is empty")
    kind = None if isinstance(node, list) else _leaf_type(node)
    if kind is None:
        _fail("json array, data type is unknown")
    is_object = isinstance(node, dict)
    is_text = kind in _TEXT
    if is_text and element_count(shape) != 1:
        _fail("json array, string or bytes type only support one item")
    if is_object and not is_text:
        _fail("json array, item is object type, object only support string or bytes type")
    if not is_object and not is_text:
        fast = _fast_numeric(value, shape, kind)
        if fast is not None:
            return fast
    leaves = _walk(value, shape, kind, is_object)
    if is_text:
        item = leaves[0]
        if is_object:
            item = _text(_b64(item.get("b64")), kind, ())
        out = np.empty(1, dtype=object)
        out[0] = item
        return out.reshape(shape)
    if kind == "int32":
        leaves = [_wrap_int32(v) for v in leaves]
    return _numeric(np.array(leaves), kind, shape)


def _fast_numeric(value: list[Any], shape: list[int], kind: str) -> np.ndarray | None:
    """numpy does the work when the array is rectangular and of one Python type."""
    try:
        array = np.array(value)
    except ValueError:
        return None
    if array.shape != tuple(shape) or array.dtype.kind not in _KINDS[kind]:
        return None
    leaves: Iterable[Any] = value
    for _ in range(len(shape) - 1):
        leaves = chain.from_iterable(leaves)
    if set(map(type, leaves)) != {_PY_TYPE[kind]}:
        return None
    return _numeric(array, kind, shape)


def _numeric(array: np.ndarray, kind: str, shape: list[int]) -> np.ndarray:
    if kind == "int32":
        return array.astype(np.int32).reshape(shape)  # wraps like nlohmann's get<int32_t>
    if kind == "float32":
        with np.errstate(over="ignore"):
            return array.astype(np.float32).reshape(shape)
    return array.astype(np.bool_).reshape(shape)


def _walk(value: list[Any], shape: list[int], kind: str, is_object: bool) -> list[Any]:
    """MindSpore's element-by-element checks, in its order; returns the leaves in order."""
    leaves: list[Any] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, list):
            _fail("invalid json array: json type is not array")
        if len(node) != shape[depth]:
            _fail(
                f"invalid json array: json size is {len(node)}, the dim {depth} expected to be "
                f"{shape[depth]}"
            )
        if depth + 1 < len(shape):
            stack.extend((child, depth + 1) for child in reversed(node))
            continue
        for item in node:
            if is_object:
                if not isinstance(item, dict) or _leaf_type(item) not in _TEXT:
                    _fail("json array, object type only support string or bytes type")
                if _leaf_type(item) != kind:
                    _fail("json array, elements type is not equal")
            else:
                if not isinstance(item, int | float | str):
                    _fail("json array, data should be number, bool, string or bytes")
                if _leaf_type(item) != kind:
                    _fail("json array, elements type is not equal")
            leaves.append(item)
    return leaves


# ---------------------------------------------------------------------------------- reply


def encode_instances(results: Sequence[MsResult],
                     output_types: Mapping[str, str] | None = None) -> bytes:
    """``{"instances": [...]}``, or ``{"error_msg": ...}`` when all instances failed alike.

    ``output_types`` maps a STRING output name to ``"str"`` (JSON string) or ``"bytes"``
    (``{"b64": ...}``); by default a STRING value is a JSON string when it is valid UTF-8.
    """
    if results and all(isinstance(r, str) for r in results) and len(set(results)) == 1:
        return encode_error(str(results[0]))
    types = output_types or {}
    instances: list[dict[str, Any]] = []
    for result in results:
        if isinstance(result, str):
            instances.append({"error_msg": result})
        else:
            instances.append({k: _json_value(np.asarray(v), types.get(k))
                              for k, v in result.items()})
    return orjson.dumps(
        {"instances": instances}, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS
    )


def _json_value(array: np.ndarray, kind: str | None) -> Any:
    if array.dtype.kind in "OSU":
        out = np.empty(array.shape, dtype=object)
        flat = out.reshape(-1)
        for i, item in enumerate(array.reshape(-1)):
            flat[i] = _text_value(item, kind)
        return out.tolist()
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 0:
        return array[()]
    return np.ascontiguousarray(array)


def _text_value(item: Any, kind: str | None) -> Any:
    raw = item.encode() if isinstance(item, str) else bytes(item)
    if kind != "bytes":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if kind == "str":
                return raw.decode("utf-8", "replace")
    return {"b64": base64.b64encode(raw).decode()}


def encode_error(message: str) -> bytes:
    """``{"error_msg":"<message>"}``."""
    return orjson.dumps({"error_msg": message})
