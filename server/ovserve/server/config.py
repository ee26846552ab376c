"""The config.json contract: OVMS's schema as typed dataclasses, parsed with precise errors.

This module is the contract between the model server and the operator: the server parses the
bytes of ``config.json`` with :func:`parse_config`, the operator renders them with
:func:`render_config`, and both identify a config by :func:`config_hash` of its exact bytes.
It imports nothing but the standard library, so the operator can import it without pulling in
OpenVINO or Tornado.

The accepted document (OVMS ``src/schema.cpp``; every object rejects unknown keys)::

    {
      "model_config_list": [
        {"config": {
            "name": "resnet",                       # required, no "/" or ".." in it
            "base_path": "models/resnet",           # relative paths resolve against config.json's folder;
                                                    # or s3://, gs://, az:// (kept as written)
            "batch_size": 1,                        # int >= 0, or "auto"
            "shape": "(1,3,224,224)",               # or {"input": "(1,3,-1,-1)"}; dims N, -1, a:b
            "layout": "NHWC:NCHW",                  # or {"input": "NHWC:NCHW"}
            "nireq": 0,                             # int >= 0; 0 = device's optimal number
            "target_device": "CPU",                 # CPU, GPU, NPU, AUTO, HETERO:..., MULTI:...
            "plugin_config": {"PERFORMANCE_HINT": "LATENCY"},
            "model_version_policy": {"latest": {"num_versions": 1}}
        }}
      ],
      "monitoring": {"metrics": {"enable": true, "metrics_list": ["ovms_requests_success"]}}
    }

Errors name the field with a JSON-path-like location, e.g.
``model_config_list[0].config.nireq: expected an integer >= 0, got "four"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DEFAULT_METRICS",
    "OPTIONAL_METRICS",
    "ConfigError",
    "MetricsConfig",
    "ModelConfig",
    "ServerConfig",
    "VersionPolicy",
    "config_hash",
    "dump_config",
    "parse_config",
    "parse_shape",
    "parse_version_policy",
    "render_config",
]

DEFAULT_METRICS: tuple[str, ...] = (
    "ovms_requests_success",
    "ovms_requests_fail",
    "ovms_request_time_us",
    "ovms_streams",
    "ovms_inference_time_us",
    "ovms_wait_for_infer_req_time_us",
    "ovms_current_requests",
)
OPTIONAL_METRICS: tuple[str, ...] = ("ovms_infer_req_queue_size", "ovms_infer_req_active")

_MODEL_KEYS = {
    "name",
    "base_path",
    "batch_size",
    "shape",
    "layout",
    "nireq",
    "target_device",
    "plugin_config",
    "model_version_policy",
    "allow_cache",
    "stateful",
    "idle_sequence_cleanup",
    "low_latency_transformation",
    "max_sequence_number",
}
# Keys OVMS's schema accepts but this server does not implement; rejected with a clear message
# rather than silently ignored.
_UNSUPPORTED_TOP_KEYS = {
    "pipeline_config_list": "DAG pipelines are not supported by ovserve",
    "custom_node_library_config_list": "custom node libraries are not supported by ovserve",
    "custom_loader_config_list": "custom loaders are not supported by ovserve",
    "mediapipe_config_list": "MediaPipe graphs are not supported by ovserve",
}
_TOP_KEYS = {"model_config_list", "monitoring"} | set(_UNSUPPORTED_TOP_KEYS)
_SHAPE_RE = re.compile(r"^\s*\(?\s*(-?\d+|\d+:\d+)(\s*,\s*(-?\d+|\d+:\d+))*\s*\)?\s*$")
_LAYOUT_RE = re.compile(r"^[A-Za-z.?]+(:[A-Za-z.?]+)?$")
_REMOTE_RE = re.compile(r"^[a-z][a-z0-9+.-]*://")
_DEVICE_RE = re.compile(r"^[A-Z][A-Z0-9_]*(\.\d+)?(:[A-Z0-9_.,]+)?$")


class ConfigError(ValueError):
    """A config document that does not follow the schema. ``str(err)`` names the field."""


@dataclass(frozen=True)
class VersionPolicy:
    """Which numeric version folders to serve: all, the latest N, or specific ones."""

    kind: Literal["all", "latest", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.kind == "all":
            return {"all": {}}
        if self.kind == "latest":
            return {"latest": {"num_versions": self.num_versions}}
        return {"specific": {"versions": list(self.versions)}}


@dataclass(frozen=True)
class ModelConfig:
    """One ``model_config_list[].config`` entry, validated. ``base_path`` is absolute or a URL."""

    name: str
    base_path: str
    batch_size: int | Literal["auto"] | None = None
    shape: str | dict[str, str] | None = None
    layout: str | dict[str, str] | None = None
    nireq: int = 0
    target_device: str = "CPU"
    plugin_config: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    model_version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    allow_cache: bool = True

    def load_key(self) -> str:
        """A stable fingerprint of everything that affects how versions are loaded.

        Any change of it reloads every version of the model (OVMS semantics); a change of the
        version policy alone does not, it only starts or retires versions.
        """
        doc = {
            "base_path": self.base_path,
            "batch_size": self.batch_size,
            "shape": self.shape,
            "layout": self.layout,
            "nireq": self.nireq,
            "target_device": self.target_device,
            "plugin_config": dict(self.plugin_config),
        }
        return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class MetricsConfig:
    enable: bool = False
    metrics_list: tuple[str, ...] | None = None  # None: OVMS's default list; () exposes no ovms_*


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...] = ()
    metrics: MetricsConfig | None = None

    def model(self, name: str) -> ModelConfig | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


# ---------------------------------------------------------------- hashing and rendering


def config_hash(data: bytes) -> str:
    """SHA-256 (hex) of the exact config bytes; what the server reports and the operator expects."""
    return hashlib.sha256(data).hexdigest()


def dump_config(doc: Mapping[str, Any]) -> bytes:
    """Canonical bytes for a config document: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def render_config(
    models: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any] | None = None
) -> bytes:
    """Render model entries (plain OVMS ``config`` dicts) into canonical config.json bytes.

    Entries are ordered by name, so the bytes (and the hash) do not depend on the order in which
    the caller found them. The result is validated with :func:`parse_config` before it is
    returned, so a caller can never produce a document the server would refuse.
    """
    ordered = sorted(models, key=lambda m: str(m.get("name", "")))
    doc: dict[str, Any] = {"model_config_list": [{"config": dict(m)} for m in ordered]}
    if metrics is not None:
        doc["monitoring"] = {"metrics": dict(metrics)}
    data = dump_config(doc)
    parse_config(data, base_dir="/")
    return data


# ---------------------------------------------------------------- parsing


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(path: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {_type_name(value)} {_show(value)}")


def _check_keys(obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else key
            raise ConfigError(
                f"{where}: unknown key (allowed: {', '.join(sorted(allowed))})"
            )


def _int(value: Any, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, f"an integer >= {minimum}", value)
    return value


def parse_shape(text: str, path: str = "shape") -> tuple[tuple[int, int], ...]:
    """Parse an OVMS shape string ``(1,3,-1,10:20)`` into (min, max) pairs; -1 max = unbounded."""
    if not _SHAPE_RE.match(text):
        raise ConfigError(f"{path}: The provided shape is in wrong format: {text!r}")
    dims: list[tuple[int, int]] = []
    for part in text.strip().strip("()").split(","):
        part = part.strip()
        if ":" in part:
            lo, hi = (int(p) for p in part.split(":"))
            if lo > hi:
                raise ConfigError(f"{path}: range {part} has its lower bound above its upper bound")
            dims.append((lo, hi))
        else:
            n = int(part)
            if n < -1 or n == 0:
                raise ConfigError(f"{path}: dimension {n} must be positive or -1")
            dims.append((0, -1) if n == -1 else (n, n))
    return tuple(dims)


def _shape_field(value: Any, path: str) -> str | dict[str, str]:
    if isinstance(value, str):
        if value != "auto":
            parse_shape(value, path)
        return value
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(v, str):
                raise _fail(f"{path}.{k}", 'a shape string like "(1,3,224,224)"', v)
            if v != "auto":
                parse_shape(v, f"{path}.{k}")
            out[k] = v
        return out
    raise _fail(path, 'a shape string like "(1,3,224,224)" or an object of them', value)


def _layout_field(value: Any, path: str) -> str | dict[str, str]:
    def one(text: Any, where: str) -> str:
        if not isinstance(text, str) or not _LAYOUT_RE.match(text):
            raise _fail(where, 'a layout like "NHWC" or "NHWC:NCHW"', text)
        return text

    if isinstance(value, dict):
        return {k: one(v, f"{path}.{k}") for k, v in value.items()}
    return one(value, path)


def parse_version_policy(value: Any, path: str = "model_version_policy") -> VersionPolicy:
    """Parse ``{"all":{}}``, ``{"latest":{"num_versions":N}}`` or ``{"specific":{"versions":[…]}}``."""
    if not isinstance(value, dict):
        raise _fail(path, "an object with one of all, latest, specific", value)
    if len(value) != 1:
        raise ConfigError(
            f"{path}: Model version policy is in wrong format: "
            "exactly one of all, latest, specific is required"
        )
    (kind, body), = value.items()
    if kind not in ("all", "latest", "specific"):
        raise ConfigError(
            f"{path}.{kind}: Model version policy contains unsupported key "
            "(allowed: all, latest, specific)"
        )
    where = f"{path}.{kind}"
    if not isinstance(body, dict):
        raise _fail(where, "an object", body)
    if kind == "all":
        _check_keys(body, set(), where)
        return VersionPolicy("all")
    if kind == "latest":
        _check_keys(body, {"num_versions"}, where)
        n = _int(body.get("num_versions", 1), f"{where}.num_versions", minimum=1)
        return VersionPolicy("latest", num_versions=n)
    _check_keys(body, {"versions"}, where)
    versions = body.get("versions")
    if not isinstance(versions, list) or not versions:
        raise _fail(f"{where}.versions", "a non-empty array of version numbers", versions)
    parsed = tuple(
        sorted({_int(v, f"{where}.versions[{i}]", minimum=1) for i, v in enumerate(versions)})
    )
    return VersionPolicy("specific", versions=parsed)


def _model(entry: Any, path: str, base_dir: str) -> ModelConfig:
    if not isinstance(entry, dict):
        raise _fail(path, 'an object {"config": {...}}', entry)
    _check_keys(entry, {"config"}, path)
    if "config" not in entry:
        raise ConfigError(f"{path}.config: required key is missing")
    cfg = entry["config"]
    path = f"{path}.config"
    if not isinstance(cfg, dict):
        raise _fail(path, "an object", cfg)
    _check_keys(cfg, _MODEL_KEYS, path)
    for required in ("name", "base_path"):
        if required not in cfg:
            raise ConfigError(f"{path}.{required}: required key is missing")
    name = cfg["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"{path}.name", "a non-empty string", name)
    if "/" in name or ".." in name or name != name.strip():
        raise ConfigError(f"{path}.name: {name!r} must not contain '/', '..' or surrounding spaces")
    base = cfg["base_path"]
    if not isinstance(base, str) or not base:
        raise _fail(f"{path}.base_path", "a non-empty string", base)
    if _REMOTE_RE.match(base):
        # A storage URL (s3://, gs://, az://...) is kept as written. Whether it can be read is
        # the model's own matter (its status says why), not the document's: see storage/.
        base_path = base
    else:
        base_path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(base)))

    batch_size: int | Literal["auto"] | None = None
    if "batch_size" in cfg:
        bs = cfg["batch_size"]
        if bs == "auto":
            batch_size = "auto"
        elif isinstance(bs, str) and bs.isdigit():
            batch_size = int(bs)
        else:
            batch_size = _int(bs, f"{path}.batch_size", minimum=0)
        if batch_size == 0:
            batch_size = None
    shape = _shape_field(cfg["shape"], f"{path}.shape") if "shape" in cfg else None
    layout = _layout_field(cfg["layout"], f"{path}.layout") if "layout" in cfg else None
    nireq = _int(cfg.get("nireq", 0), f"{path}.nireq", minimum=0)
    if nireq > 100_000:
        raise ConfigError(f"{path}.nireq: Nireq parameter too high: {nireq} (max 100000)")
    device = cfg.get("target_device", "CPU")
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise _fail(f"{path}.target_device", 'a device name like "CPU", "GPU.1", "AUTO:GPU,CPU"', device)
    plugin = cfg.get("plugin_config", {})
    if not isinstance(plugin, dict):
        raise _fail(f"{path}.plugin_config", "an object (Plugin config is in wrong format)", plugin)
    for key, value in plugin.items():
        if not isinstance(value, str | int | float | bool):
            raise _fail(f"{path}.plugin_config.{key}", "a string, number or boolean", value)
    policy = (
        parse_version_policy(cfg["model_version_policy"], f"{path}.model_version_policy")
        if "model_version_policy" in cfg
        else VersionPolicy()
    )
    for flag in ("allow_cache", "stateful", "idle_sequence_cleanup", "low_latency_transformation"):
        if flag in cfg and not isinstance(cfg[flag], bool):
            raise _fail(f"{path}.{flag}", "a boolean", cfg[flag])
    if cfg.get("stateful"):
        raise ConfigError(f"{path}.stateful: stateful models are not supported by ovserve")
    if "max_sequence_number" in cfg:
        _int(cfg["max_sequence_number"], f"{path}.max_sequence_number")
    return ModelConfig(
        name=name,
        base_path=base_path,
        batch_size=batch_size,
        shape=shape,
        layout=layout,
        nireq=nireq,
        target_device=device,
        plugin_config=dict(plugin),
        model_version_policy=policy,
        allow_cache=bool(cfg.get("allow_cache", True)),
    )


def _metrics(value: Any, path: str) -> MetricsConfig:
    if not isinstance(value, dict):
        raise _fail(path, "an object", value)
    _check_keys(value, {"metrics"}, path)
    metrics = value.get("metrics", {})
    path = f"{path}.metrics"
    if not isinstance(metrics, dict):
        raise _fail(path, "an object", metrics)
    _check_keys(metrics, {"enable", "metrics_list"}, path)
    enable = metrics.get("enable", False)
    if not isinstance(enable, bool):
        raise _fail(f"{path}.enable", "a boolean", enable)
    if "metrics_list" not in metrics:
        return MetricsConfig(enable=enable)
    names = metrics["metrics_list"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(f"{path}.metrics_list", "an array of metric names", names)
    known = set(DEFAULT_METRICS) | set(OPTIONAL_METRICS)
    for i, n in enumerate(names):
        if n not in known:
            raise ConfigError(
                f"{path}.metrics_list[{i}]: unknown metric {n!r} (known: {', '.join(sorted(known))})"
            )
    return MetricsConfig(enable=enable, metrics_list=tuple(names))


def parse_config(data: bytes | str, base_dir: str) -> ServerConfig:
    """Parse and validate config.json bytes; relative base paths resolve against ``base_dir``.

    Raises :class:`ConfigError` naming the first offending field.
    """
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"The file is not valid json - Error: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"The file is not valid UTF-8: {exc}") from None
    if not isinstance(doc, dict):
        raise _fail("(document)", "a JSON object", doc)
    _check_keys(doc, _TOP_KEYS, "")
    for key, why in _UNSUPPORTED_TOP_KEYS.items():
        if doc.get(key):
            raise ConfigError(f"{key}: {why}")
    if "model_config_list" not in doc:
        raise ConfigError("model_config_list: required key is missing")
    entries = doc["model_config_list"]
    if not isinstance(entries, list):
        raise _fail("model_config_list", "an array", entries)
    models = [_model(e, f"model_config_list[{i}]", base_dir) for i, e in enumerate(entries)]
    seen: set[str] = set()
    for i, m in enumerate(models):
        if m.name in seen:
            raise ConfigError(
                f"model_config_list[{i}].config.name: duplicate model name {m.name!r}"
            )
        seen.add(m.name)
    metrics = _metrics(doc["monitoring"], "monitoring") if "monitoring" in doc else None
    return ServerConfig(models=tuple(models), metrics=metrics)
