"""Typed, validated views of InferenceServer and InferenceModel objects.

The kopf handlers (through :mod:`ovserve.operator.reconcile`) decode every object they read
with :meth:`ServerSpec.from_body` and :meth:`ModelSpec.from_body`; :mod:`ovserve.operator.render`
and :mod:`ovserve.operator.status` only ever see these dataclasses. Decoding applies the CRD's
defaults again (an API server without schema defaulting, or an object stored before a default
was added, still decodes the same way) and checks what an OpenAPI schema cannot express, such
as ``..`` in a path or a model entry that ``ovserve.server.config`` would refuse. Those checks
raise :class:`SpecError`, which the handlers turn into ``kopf.PermanentError`` and a status
message.

An InferenceModel (``crds/inferencemodel.yaml``)::

    apiVersion: ovserve.io/v1alpha1
    kind: InferenceModel
    metadata: {name: resnet, namespace: ml}
    spec:
      server: default            # InferenceServer in the same namespace
      modelName: resnet50        # default: metadata.name
      basePath: resnet50         # inside the server's storage; default: the model name
      targetDevice: GPU
      versionPolicy: {latest: {numVersions: 2}}
      batchSize: 1               # or "auto"
      shape: "(1,3,224,224)"     # or inputShapes: {input: "(1,3,-1,-1)"}
      layout: "NHWC:NCHW"        # or inputLayouts: {input: "NHWC:NCHW"}
      nireq: 4
      pluginConfig: {PERFORMANCE_HINT: LATENCY}

becomes the OVMS config entry (:meth:`ModelSpec.config_entry`, storage mounted at ``/models``)::

    {"name": "resnet50", "base_path": "/models/resnet50", "target_device": "GPU",
     "model_version_policy": {"latest": {"num_versions": 2}}, "batch_size": 1,
     "shape": "(1,3,224,224)", "layout": "NHWC:NCHW", "nireq": 4,
     "plugin_config": {"PERFORMANCE_HINT": "LATENCY"}}

Instead of ``basePath`` (a folder of the server's volume), a model may live in object storage:
``storageUri: s3://bucket/resnet50`` (or ``gs://``, ``az://``), with ``storageSecret`` naming a
Secret of that provider's credentials; the URI becomes ``base_path`` as written and
:mod:`ovserve.operator.render` puts the credentials into the server pods' environment.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ovserve.server.config import ConfigError, VersionPolicy, parse_config, render_config

GROUP = "ovserve.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
SERVER_KIND = "InferenceServer"
SERVER_PLURAL = "inferenceservers"
MODEL_KIND = "InferenceModel"
MODEL_PLURAL = "inferencemodels"

DEFAULT_SERVER = "default"
DEFAULT_IMAGE = "ovserve-server:0.1.0"
DEFAULT_GPU_RESOURCE = "gpu.intel.com/i915"
DEFAULT_MOUNT_PATH = "/models"
DEFAULT_REST_PORT = 8081
DEFAULT_CACHE_PATH = "/cache"
# Seconds a server pod keeps answering after SIGTERM while it reports not-ready, so Services
# route away before it stops listening (``--drain_seconds``); bound: 0..600.
DEFAULT_DRAIN_SECONDS = 10
MAX_DRAIN_SECONDS = 600
# The server waits this long for in-flight requests after its drain period (server/cli.py).
INFLIGHT_TIMEOUT_SECONDS = 30
# Volume names and mount paths the operator renders itself; spec.volumes may not reuse them.
RESERVED_VOLUMES = ("config", "tmp", "models", "tls", "cache")
RESERVED_PATHS = ("/config", "/tmp", "/tls")
_POD_SECURITY_KEYS = {
    "runAsUser": "int", "runAsGroup": "int", "fsGroup": "int", "runAsNonRoot": "bool",
    "supplementalGroups": "ints", "fsGroupChangePolicy": "str", "seccompProfile": "obj",
    "seLinuxOptions": "obj", "sysctls": "list", "appArmorProfile": "obj",
    "supplementalGroupsPolicy": "str", "windowsOptions": "obj",
}
_CONTAINER_SECURITY_KEYS = {
    "runAsUser": "int", "runAsGroup": "int", "runAsNonRoot": "bool", "privileged": "bool",
    "allowPrivilegeEscalation": "bool", "readOnlyRootFilesystem": "bool", "capabilities": "obj",
    "seccompProfile": "obj", "seLinuxOptions": "obj", "procMount": "str",
    "appArmorProfile": "obj", "windowsOptions": "obj",
}
_VOLUME_SOURCES = (
    "configMap", "secret", "emptyDir", "persistentVolumeClaim", "hostPath", "projected",
    "downwardAPI", "csi", "ephemeral", "nfs", "image",
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_RESOURCE_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)/"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BASE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_STORAGE_URI = re.compile(r"^(s3|gs|az|azfs)://[a-z0-9][-a-z0-9_.]{1,221}[a-z0-9](/[^\s]*)?$")
STORAGE_SCHEMES = ("s3", "gs", "az", "azfs")


class SpecError(ValueError):
    """A spec the operator cannot serve; ``str(err)`` names the field, e.g. ``spec.basePath: …``."""


# ---------------------------------------------------------------- small typed readers


def _obj(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}: expected an object, got {type(value).__name__}")
    return dict(value)


def _str(value: Any, path: str, default: str | None = None) -> str | None:
    if value is None:
        return default
    if not isinstance(value, str):
        raise SpecError(f"{path}: expected a string, got {value!r}")
    return value


def _req_str(value: Any, path: str, default: str) -> str:
    text = _str(value, path, default)
    assert text is not None
    return text


def _int(value: Any, path: str, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}: expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise SpecError(f"{path}: {value} is outside {lo}..{hi}")
    return value


def _bool(value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{path}: expected a boolean, got {value!r}")
    return value


def _str_map(value: Any, path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, item in _obj(value, path).items():
        if not isinstance(item, str):
            raise SpecError(f"{path}.{key}: expected a string, got {item!r}")
        out[str(key)] = item
    return out


def _enum(value: str, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SpecError(f"{path}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _match(value: str, path: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise SpecError(f"{path}: {value!r} is not {what}")
    return value


def _meta(body: Mapping[str, Any]) -> tuple[str, str, str, int | None, bool]:
    meta = _obj(body.get("metadata"), "metadata")
    name = _req_str(meta.get("name"), "metadata.name", "")
    namespace = _req_str(meta.get("namespace"), "metadata.namespace", "default")
    uid = _req_str(meta.get("uid"), "metadata.uid", "")
    generation = meta.get("generation")
    deleting = bool(meta.get("deletionTimestamp"))
    return name, namespace, uid, generation if isinstance(generation, int) else None, deleting


# ---------------------------------------------------------------- InferenceServer


@dataclass(frozen=True)
class Storage:
    """The model repository volume: exactly one of a PVC or a hostPath, mounted read-only."""

    claim_name: str | None = None
    host_path: str | None = None
    host_path_type: str = "Directory"
    sub_path: str | None = None
    mount_path: str = DEFAULT_MOUNT_PATH


@dataclass(frozen=True)
class CompileCache:
    """OpenVINO's model compile cache (``--cache_dir``) on a volume: one of a PVC, a hostPath
    (node-local, survives pod restarts on that node) or an emptyDir (survives container
    restarts only)."""

    claim_name: str | None = None
    host_path: str | None = None
    empty_dir_size: str | None = None
    mount_path: str = DEFAULT_CACHE_PATH

    def volume(self) -> dict[str, Any]:
        if self.claim_name:
            return {"name": "cache", "persistentVolumeClaim": {"claimName": self.claim_name}}
        if self.host_path:
            return {"name": "cache", "hostPath": {"path": self.host_path,
                                                   "type": "DirectoryOrCreate"}}
        return {"name": "cache", "emptyDir": {"sizeLimit": self.empty_dir_size}
                if self.empty_dir_size else {}}


@dataclass(frozen=True)
class Disruption:
    """The PodDisruptionBudget rendered when ``replicas > 1`` (exactly one of the two set)."""

    enabled: bool = True
    max_unavailable: int | str | None = 1
    min_available: int | str | None = None


@dataclass(frozen=True)
class ServerSpec:
    """A decoded InferenceServer: the pool of server pods and how they are run."""

    name: str
    namespace: str
    uid: str = ""
    generation: int | None = None
    deleting: bool = False
    replicas: int = 1
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    requests: dict[str, str | int] = field(default_factory=dict)
    limits: dict[str, str | int] = field(default_factory=dict)
    gpu_count: int = 0
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] | None = None
    storage: Storage | None = None
    rest_port: int = DEFAULT_REST_PORT
    service_type: str = "ClusterIP"
    metrics_enabled: bool = True
    metrics_list: tuple[str, ...] = ()
    tls_secret: str | None = None
    log_level: str = "INFO"
    poll_seconds: int = 1
    service_account: str | None = None
    pod_annotations: dict[str, str] = field(default_factory=dict)
    pod_labels: dict[str, str] = field(default_factory=dict)
    # Pod knobs (issue 13, item 9); None/empty = the operator's hardened defaults (render.py).
    pod_security_context: dict[str, Any] | None = None
    container_security_context: dict[str, Any] | None = None
    topology_spread_constraints: tuple[dict[str, Any], ...] = ()
    priority_class_name: str | None = None
    env: tuple[dict[str, Any], ...] = ()
    env_from: tuple[dict[str, Any], ...] = ()
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()
    compile_cache: CompileCache | None = None
    disruption: Disruption = field(default_factory=Disruption)
    drain_seconds: int = DEFAULT_DRAIN_SECONDS

    @property
    def termination_grace_seconds(self) -> int:
        """The pod's grace period: the drain, then in-flight requests, plus 5 s to exit."""
        return self.drain_seconds + INFLIGHT_TIMEOUT_SECONDS + 5

    @property
    def mount_path(self) -> str:
        return self.storage.mount_path if self.storage else DEFAULT_MOUNT_PATH

    @property
    def scheme(self) -> str:
        return "https" if self.tls_secret else "http"

    @classmethod
    def from_body(cls, body: Mapping[str, Any], default_image: str = DEFAULT_IMAGE) -> ServerSpec:
        """Decode an InferenceServer object (as read from the API); raises :class:`SpecError`.

        An empty or missing ``spec.image`` means ``default_image``: the operator's
        ``--server-image``, so servers follow operator upgrades.
        """
        name, namespace, uid, generation, deleting = _meta(body)
        spec = _obj(body.get("spec"), "spec")
        resources = _obj(spec.get("resources"), "spec.resources")
        gpu = _obj(spec.get("gpu"), "spec.gpu")
        metrics = _obj(spec.get("metrics"), "spec.metrics")
        tls = _obj(spec.get("tls"), "spec.tls")
        gpu_resource = _req_str(gpu.get("resourceName"), "spec.gpu.resourceName",
                                DEFAULT_GPU_RESOURCE)
        _match(gpu_resource, "spec.gpu.resourceName", _RESOURCE_NAME,
               "an extended resource name like gpu.intel.com/i915 or nvidia.com/gpu")
        limits = _quantities(resources.get("limits"), "spec.resources.limits")
        gpu_count = _int(gpu.get("count"), "spec.gpu.count", 0, 0, 64)
        if gpu_count and gpu_resource in limits:
            raise SpecError(
                f"spec.resources.limits.{gpu_resource}: GPUs are requested with spec.gpu; "
                "do not repeat them in spec.resources"
            )
        tolerations = spec.get("tolerations") or []
        if not isinstance(tolerations, list) or not all(
                isinstance(t, Mapping) for t in tolerations):
            raise SpecError("spec.tolerations: expected an array of objects")
        affinity = spec.get("affinity")
        secrets = spec.get("imagePullSecrets") or []
        if not isinstance(secrets, list):
            raise SpecError("spec.imagePullSecrets: expected an array of {name: ...}")
        tls_secret = _str(tls.get("secretName"), "spec.tls.secretName") if tls else None
        if tls and not tls_secret:
            raise SpecError("spec.tls.secretName: required when spec.tls is given")
        sa = _str(spec.get("serviceAccountName"), "spec.serviceAccountName")
        for value, where in ((tls_secret, "spec.tls.secretName"), (sa, "spec.serviceAccountName")):
            if value is not None:
                _match(value, where, _DNS_SUBDOMAIN, "a valid object name")
        if not _DNS_LABEL.match(name) or len(name) > 56:
            raise SpecError(
                f"metadata.name: {name!r} must be a DNS label of at most 56 characters "
                "(it names the Service and the <name>-config ConfigMap)"
            )
        storage = _storage(spec.get("storage"))
        return cls(
            name=name,
            namespace=namespace,
            uid=uid,
            generation=generation,
            deleting=deleting,
            replicas=_int(spec.get("replicas"), "spec.replicas", 1, 0, 1000),
            image=_req_str(spec.get("image"), "spec.image", "") or default_image,
            image_pull_policy=_enum(
                _req_str(spec.get("imagePullPolicy"), "spec.imagePullPolicy", "IfNotPresent"),
                "spec.imagePullPolicy", PULL_POLICIES,
            ),
            image_pull_secrets=tuple(
                _req_str(_obj(s, f"spec.imagePullSecrets[{i}]").get("name"),
                         f"spec.imagePullSecrets[{i}].name", "")
                for i, s in enumerate(secrets)
            ),
            requests=_quantities(resources.get("requests"), "spec.resources.requests"),
            limits=limits,
            gpu_count=gpu_count,
            gpu_resource=gpu_resource,
            node_selector=_str_map(spec.get("nodeSelector"), "spec.nodeSelector"),
            tolerations=tuple(dict(t) for t in tolerations),
            affinity=_obj(affinity, "spec.affinity") or None,
            storage=storage,
            rest_port=_int(spec.get("restPort"), "spec.restPort", DEFAULT_REST_PORT, 1024, 65535),
            service_type=_enum(
                _req_str(spec.get("serviceType"), "spec.serviceType", "ClusterIP"),
                "spec.serviceType", SERVICE_TYPES,
            ),
            metrics_enabled=_bool(metrics.get("enabled"), "spec.metrics.enabled", True),
            metrics_list=tuple(_str_list(metrics.get("metricsList"), "spec.metrics.metricsList")),
            tls_secret=tls_secret,
            log_level=_enum(
                _req_str(spec.get("logLevel"), "spec.logLevel", "INFO"), "spec.logLevel", LOG_LEVELS
            ),
            poll_seconds=_int(spec.get("fileSystemPollWaitSeconds"),
                              "spec.fileSystemPollWaitSeconds", 1, 0, 3600),
            service_account=sa,
            pod_annotations=_str_map(spec.get("podAnnotations"), "spec.podAnnotations"),
            pod_labels=_str_map(spec.get("podLabels"), "spec.podLabels"),
            **_pod_knobs(spec, storage.mount_path if storage else DEFAULT_MOUNT_PATH),
        )


def _quantities(value: Any, path: str) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for key, item in _obj(value, path).items():
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise SpecError(f"{path}.{key}: expected a quantity like 500m or 2Gi, got {item!r}")
        out[str(key)] = item
    return out


def _str_list(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{path}: expected an array of strings")
    return list(value)


def _storage(value: Any) -> Storage | None:
    if value is None:
        return None
    spec = _obj(value, "spec.storage")
    pvc = _obj(spec.get("persistentVolumeClaim"), "spec.storage.persistentVolumeClaim")
    host = _obj(spec.get("hostPath"), "spec.storage.hostPath")
    if bool(pvc) == bool(host):
        raise SpecError("spec.storage: give exactly one of persistentVolumeClaim and hostPath")
    sub_path = _str(spec.get("subPath"), "spec.storage.subPath")
    if sub_path is not None and (sub_path.startswith("/") or ".." in sub_path.split("/")):
        raise SpecError(f"spec.storage.subPath: {sub_path!r} must be a relative path without '..'")
    mount_path = _req_str(spec.get("mountPath"), "spec.storage.mountPath", DEFAULT_MOUNT_PATH)
    if not mount_path.startswith("/") or ".." in mount_path.split("/"):
        raise SpecError(f"spec.storage.mountPath: {mount_path!r} must be an absolute path")
    if mount_path.rstrip("/") in ("", "/config", "/tmp", "/tls"):
        raise SpecError(f"spec.storage.mountPath: {mount_path!r} is used by the server itself")
    if pvc:
        claim = _req_str(pvc.get("claimName"), "spec.storage.persistentVolumeClaim.claimName", "")
        _match(claim, "spec.storage.persistentVolumeClaim.claimName", _DNS_SUBDOMAIN,
               "a valid claim name")
        return Storage(claim_name=claim, sub_path=sub_path, mount_path=mount_path)
    path = _req_str(host.get("path"), "spec.storage.hostPath.path", "")
    if not path.startswith("/"):
        raise SpecError(f"spec.storage.hostPath.path: {path!r} must be an absolute path")
    kind = _req_str(host.get("type"), "spec.storage.hostPath.type", "Directory")
    _enum(kind, "spec.storage.hostPath.type", ("", "Directory", "DirectoryOrCreate"))
    return Storage(host_path=path, host_path_type=kind, sub_path=sub_path, mount_path=mount_path)


# ---------------------------------------------------------------- pod knobs (issue 13, item 9)


def _list_of_objects(value: Any, path: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise SpecError(f"{path}: expected an array of objects")
    return [dict(v) for v in value]


def _security_context(value: Any, path: str, keys: Mapping[str, str]) -> dict[str, Any] | None:
    """A securityContext that replaces the operator's default one; types checked per key."""
    if value is None:
        return None
    ctx = _obj(value, path)
    for key, item in ctx.items():
        kind = keys.get(key)
        where = f"{path}.{key}"
        if kind is None:
            raise SpecError(f"{where}: unknown field (allowed: {', '.join(sorted(keys))})")
        if kind == "int":
            _int(item, where, 0, 0, 2**31 - 1)
        elif kind == "bool":
            _bool(item, where, False)
        elif kind == "str":
            _str(item, where)
        elif kind == "obj":
            _obj(item, where)
        elif kind == "list":
            _list_of_objects(item, where)
        elif kind == "ints" and (not isinstance(item, list) or not all(
                isinstance(g, int) and not isinstance(g, bool) and 0 <= g < 2**31 for g in item)):
            raise SpecError(f"{where}: expected an array of group ids (integers >= 0)")
    if ctx.get("runAsNonRoot") is True and ctx.get("runAsUser") == 0:
        raise SpecError(f"{path}: runAsNonRoot is true but runAsUser is 0 (root); the kubelet "
                        "would refuse to start the container")
    caps = _obj(ctx.get("capabilities"), f"{path}.capabilities")
    for key in caps:
        if key not in ("add", "drop"):
            raise SpecError(f"{path}.capabilities.{key}: unknown field (allowed: add, drop)")
        _str_list(caps[key], f"{path}.capabilities.{key}")
    return ctx


def _spread(value: Any) -> tuple[dict[str, Any], ...]:
    out = []
    for i, item in enumerate(_list_of_objects(value, "spec.topologySpreadConstraints")):
        where = f"spec.topologySpreadConstraints[{i}]"
        if item.get("maxSkew") is None:
            raise SpecError(f"{where}.maxSkew: required (an integer >= 1)")
        _int(item.get("maxSkew"), f"{where}.maxSkew", 1, 1, 1000)
        key = _req_str(item.get("topologyKey"), f"{where}.topologyKey", "")
        if not key:
            raise SpecError(f"{where}.topologyKey: required, e.g. topology.kubernetes.io/zone")
        _enum(_req_str(item.get("whenUnsatisfiable"), f"{where}.whenUnsatisfiable", ""),
              f"{where}.whenUnsatisfiable", ("DoNotSchedule", "ScheduleAnyway"))
        if "labelSelector" in item:
            _obj(item["labelSelector"], f"{where}.labelSelector")
        out.append(item)
    return tuple(out)


def _env(value: Any) -> tuple[dict[str, Any], ...]:
    seen: set[str] = set()
    out = []
    for i, item in enumerate(_list_of_objects(value, "spec.env")):
        where = f"spec.env[{i}]"
        name = _req_str(item.get("name"), f"{where}.name", "")
        _match(name, f"{where}.name", _ENV_NAME, "a valid environment variable name")
        if name in seen:
            raise SpecError(f"{where}.name: {name!r} is given twice")
        seen.add(name)
        if "value" in item and "valueFrom" in item:
            raise SpecError(f"{where}: give value or valueFrom, not both")
        if "value" in item:
            _str(item["value"], f"{where}.value")
        if "valueFrom" in item:
            source = _obj(item["valueFrom"], f"{where}.valueFrom")
            if len(source) != 1:
                raise SpecError(f"{where}.valueFrom: give exactly one of configMapKeyRef, "
                                "secretKeyRef, fieldRef, resourceFieldRef")
        unknown = set(item) - {"name", "value", "valueFrom"}
        if unknown:
            raise SpecError(f"{where}.{sorted(unknown)[0]}: unknown field "
                            "(allowed: name, value, valueFrom)")
        out.append(item)
    return tuple(out)


def _env_from(value: Any) -> tuple[dict[str, Any], ...]:
    out = []
    for i, item in enumerate(_list_of_objects(value, "spec.envFrom")):
        where = f"spec.envFrom[{i}]"
        refs = [k for k in ("configMapRef", "secretRef") if k in item]
        if len(refs) != 1:
            raise SpecError(f"{where}: give exactly one of configMapRef and secretRef")
        ref = _obj(item[refs[0]], f"{where}.{refs[0]}")
        _match(_req_str(ref.get("name"), f"{where}.{refs[0]}.name", ""),
               f"{where}.{refs[0]}.name", _DNS_SUBDOMAIN, "a valid object name")
        if "prefix" in item:
            _str(item["prefix"], f"{where}.prefix")
        out.append(item)
    return tuple(out)


def _volumes(value: Any) -> tuple[dict[str, Any], ...]:
    names: set[str] = set()
    out = []
    for i, item in enumerate(_list_of_objects(value, "spec.volumes")):
        where = f"spec.volumes[{i}]"
        name = _req_str(item.get("name"), f"{where}.name", "")
        _match(name, f"{where}.name", _DNS_LABEL, "a DNS label (lower case, digits, '-')")
        if name in RESERVED_VOLUMES:
            raise SpecError(f"{where}.name: {name!r} is a volume the operator renders itself "
                            f"(reserved: {', '.join(RESERVED_VOLUMES)})")
        if name in names:
            raise SpecError(f"{where}.name: {name!r} is given twice")
        names.add(name)
        sources = [k for k in item if k != "name"]
        if len(sources) != 1:
            raise SpecError(f"{where}: give exactly one volume source "
                            f"(e.g. {', '.join(_VOLUME_SOURCES[:5])}), got {sources or 'none'}")
        _obj(item[sources[0]], f"{where}.{sources[0]}")
        out.append(item)
    return tuple(out)


def _volume_mounts(value: Any, volumes: tuple[dict[str, Any], ...], taken: tuple[str, ...]
                   ) -> tuple[dict[str, Any], ...]:
    known = {v["name"] for v in volumes}
    paths: set[str] = set()
    out = []
    for i, item in enumerate(_list_of_objects(value, "spec.volumeMounts")):
        where = f"spec.volumeMounts[{i}]"
        name = _req_str(item.get("name"), f"{where}.name", "")
        if name not in known:
            raise SpecError(f"{where}.name: {name!r} is not a volume in spec.volumes "
                            f"(known: {', '.join(sorted(known)) or 'none'})")
        path = _req_str(item.get("mountPath"), f"{where}.mountPath", "")
        if not path.startswith("/") or ".." in path.split("/"):
            raise SpecError(f"{where}.mountPath: {path!r} must be an absolute path without '..'")
        norm = path.rstrip("/") or "/"
        if norm == "/" or norm in taken:
            raise SpecError(f"{where}.mountPath: {path!r} is used by the server itself "
                            f"({', '.join(taken)})")
        if norm in paths:
            raise SpecError(f"{where}.mountPath: {path!r} is mounted twice")
        paths.add(norm)
        if "readOnly" in item:
            _bool(item["readOnly"], f"{where}.readOnly", False)
        sub = _str(item.get("subPath"), f"{where}.subPath")
        if sub is not None and (sub.startswith("/") or ".." in sub.split("/")):
            raise SpecError(f"{where}.subPath: {sub!r} must be a relative path without '..'")
        unknown = set(item) - {"name", "mountPath", "readOnly", "subPath", "mountPropagation",
                               "subPathExpr", "recursiveReadOnly"}
        if unknown:
            raise SpecError(f"{where}.{sorted(unknown)[0]}: unknown field")
        out.append(item)
    return tuple(out)


def _compile_cache(value: Any, taken: tuple[str, ...]) -> CompileCache | None:
    if value is None:
        return None
    spec = _obj(value, "spec.compileCache")
    sources = [k for k in ("persistentVolumeClaim", "hostPath", "emptyDir") if k in spec]
    if len(sources) != 1:
        raise SpecError("spec.compileCache: give exactly one of persistentVolumeClaim, hostPath, "
                        "emptyDir")
    mount = _req_str(spec.get("mountPath"), "spec.compileCache.mountPath", DEFAULT_CACHE_PATH)
    if not mount.startswith("/") or ".." in mount.split("/") or mount.rstrip("/") in taken \
            or mount.rstrip("/") == "":
        raise SpecError(f"spec.compileCache.mountPath: {mount!r} must be an absolute path not "
                        f"used by the server itself ({', '.join(taken)})")
    body = _obj(spec[sources[0]], f"spec.compileCache.{sources[0]}")
    if sources[0] == "persistentVolumeClaim":
        claim = _req_str(body.get("claimName"),
                         "spec.compileCache.persistentVolumeClaim.claimName", "")
        _match(claim, "spec.compileCache.persistentVolumeClaim.claimName", _DNS_SUBDOMAIN,
               "a valid claim name")
        return CompileCache(claim_name=claim, mount_path=mount)
    if sources[0] == "hostPath":
        path = _req_str(body.get("path"), "spec.compileCache.hostPath.path", "")
        if not path.startswith("/"):
            raise SpecError(f"spec.compileCache.hostPath.path: {path!r} must be an absolute path")
        return CompileCache(host_path=path, mount_path=mount)
    size = body.get("sizeLimit")
    if size is not None and (isinstance(size, bool) or not isinstance(size, str | int)):
        raise SpecError(f"spec.compileCache.emptyDir.sizeLimit: expected a quantity like 2Gi, "
                        f"got {size!r}")
    return CompileCache(empty_dir_size=None if size is None else str(size), mount_path=mount)


_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


def _budget_value(value: Any, path: str) -> int | str:
    if isinstance(value, str) and _PERCENT.match(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise SpecError(f"{path}: expected an integer >= 0 or a percentage like 50%, got {value!r}")


def _disruption(value: Any) -> Disruption:
    spec = _obj(value, "spec.podDisruptionBudget")
    enabled = _bool(spec.get("enabled"), "spec.podDisruptionBudget.enabled", True)
    max_u, min_a = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_u is not None and min_a is not None:
        raise SpecError("spec.podDisruptionBudget: give maxUnavailable or minAvailable, not both")
    if min_a is not None:
        return Disruption(enabled, None,
                          _budget_value(min_a, "spec.podDisruptionBudget.minAvailable"))
    if max_u is not None:
        max_u = _budget_value(max_u, "spec.podDisruptionBudget.maxUnavailable")
        if max_u in (0, "0%"):
            raise SpecError("spec.podDisruptionBudget.maxUnavailable: 0 would block every node "
                            "drain; use at least 1 (or set enabled: false)")
    return Disruption(enabled, 1 if max_u is None else max_u, None)


def _pod_knobs(spec: Mapping[str, Any], models_path: str) -> dict[str, Any]:
    """Decode the pod-level knobs of an InferenceServer spec (fields of :class:`ServerSpec`)."""
    pcn = _str(spec.get("priorityClassName"), "spec.priorityClassName")
    if pcn is not None:
        _match(pcn, "spec.priorityClassName", _DNS_SUBDOMAIN, "a PriorityClass name")
    taken: tuple[str, ...] = (*RESERVED_PATHS, models_path.rstrip("/") or "/")
    cache = _compile_cache(spec.get("compileCache"), taken)
    if cache is not None:
        taken = (*taken, cache.mount_path.rstrip("/"))
    volumes = _volumes(spec.get("volumes"))
    return {
        "pod_security_context": _security_context(
            spec.get("podSecurityContext"), "spec.podSecurityContext", _POD_SECURITY_KEYS),
        "container_security_context": _security_context(
            spec.get("securityContext"), "spec.securityContext", _CONTAINER_SECURITY_KEYS),
        "topology_spread_constraints": _spread(spec.get("topologySpreadConstraints")),
        "priority_class_name": pcn or None,
        "env": _env(spec.get("env")),
        "env_from": _env_from(spec.get("envFrom")),
        "volumes": volumes,
        "volume_mounts": _volume_mounts(spec.get("volumeMounts"), volumes, taken),
        "compile_cache": cache,
        "disruption": _disruption(spec.get("podDisruptionBudget")),
        "drain_seconds": _int(spec.get("drainSeconds"), "spec.drainSeconds",
                              DEFAULT_DRAIN_SECONDS, 0, MAX_DRAIN_SECONDS),
    }


# ---------------------------------------------------------------- InferenceModel


@dataclass(frozen=True)
class ModelSpec:
    """A decoded InferenceModel: one entry of its server's config.json."""

    name: str  # the object's name
    namespace: str
    server: str
    model_name: str
    base_path: str  # relative to the server's storage mount
    uid: str = ""
    generation: int | None = None
    deleting: bool = False
    created: str = ""  # metadata.creationTimestamp, to order models that clash
    target_device: str = "CPU"
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    batch_size: int | str | None = None
    shape: str | dict[str, str] | None = None
    layout: str | dict[str, str] | None = None
    nireq: int | None = None
    plugin_config: dict[str, str | int] = field(default_factory=dict)
    storage_uri: str | None = None  # s3://, gs://, az://, azfs://: used instead of base_path
    storage_secret: str | None = None  # Secret holding the storage_uri provider's credentials

    @property
    def storage_scheme(self) -> str | None:
        """``s3``, ``gs`` or ``az`` for a model in object storage (``azfs://`` shares read
        Azure's credentials too, so they count as ``az``), else None."""
        if not self.storage_uri:
            return None
        scheme = self.storage_uri.split("://", 1)[0]
        return "az" if scheme == "azfs" else scheme

    def config_entry(self, mount_path: str) -> dict[str, Any]:
        """The OVMS ``config`` dict of this model; ``base_path`` is absolute inside the pod,
        or the storage URI as written."""
        entry: dict[str, Any] = {
            "name": self.model_name,
            "base_path": self.storage_uri or posixpath.join(mount_path, self.base_path),
            "target_device": self.target_device,
            "model_version_policy": self.version_policy.to_json(),
        }
        if self.batch_size is not None:
            entry["batch_size"] = self.batch_size
        if self.shape is not None:
            entry["shape"] = self.shape
        if self.layout is not None:
            entry["layout"] = self.layout
        if self.nireq is not None:
            entry["nireq"] = self.nireq
        if self.plugin_config:
            entry["plugin_config"] = dict(self.plugin_config)
        return entry

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ModelSpec:
        """Decode an InferenceModel object; raises :class:`SpecError` naming the field."""
        name, namespace, uid, generation, deleting = _meta(body)
        meta = _obj(body.get("metadata"), "metadata")
        spec = _obj(body.get("spec"), "spec")
        server = _req_str(spec.get("server"), "spec.server", DEFAULT_SERVER) or DEFAULT_SERVER
        _match(server, "spec.server", _DNS_LABEL, "an InferenceServer name")
        model_name = _req_str(spec.get("modelName"), "spec.modelName", name) or name
        _match(model_name, "spec.modelName", _MODEL_NAME, "a model name (letters, digits, _ . -)")
        if ".." in model_name:
            raise SpecError(f"spec.modelName: {model_name!r} must not contain '..'")
        base_path = _req_str(spec.get("basePath"), "spec.basePath", model_name) or model_name
        _match(base_path, "spec.basePath", _BASE_PATH, "a relative path inside the storage")
        if ".." in base_path.split("/"):
            raise SpecError(f"spec.basePath: {base_path!r} must stay inside the server's storage "
                            "(no '..')")
        storage_uri = _str(spec.get("storageUri"), "spec.storageUri")
        storage_secret = _str(spec.get("storageSecret"), "spec.storageSecret")
        if storage_uri is not None:
            if spec.get("basePath") is not None:
                raise SpecError("spec.storageUri: give either basePath (the server's volume) or "
                                "storageUri (object storage), not both")
            _match(storage_uri, "spec.storageUri", _STORAGE_URI,
                   "an object storage URI like s3://bucket/path, gs://bucket/path, "
                   "az://container/path or azfs://share/path")
        if storage_secret is not None:
            if storage_uri is None:
                raise SpecError("spec.storageSecret: only used with spec.storageUri")
            _match(storage_secret, "spec.storageSecret", _DNS_SUBDOMAIN, "a valid Secret name")
        shape = _one_of(spec, "shape", "inputShapes")
        layout = _one_of(spec, "layout", "inputLayouts")
        batch = spec.get("batchSize")
        if batch is not None and not (batch == "auto" or (isinstance(batch, int)
                                                           and not isinstance(batch, bool))):
            if isinstance(batch, str) and batch.isdigit():
                batch = int(batch)
            else:
                raise SpecError(f"spec.batchSize: expected an integer or \"auto\", got {batch!r}")
        plugin: dict[str, str | int] = {}
        for key, value in _obj(spec.get("pluginConfig"), "spec.pluginConfig").items():
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise SpecError(f"spec.pluginConfig.{key}: expected a string or integer")
            plugin[str(key)] = value
        model = cls(
            name=name,
            namespace=namespace,
            server=server,
            model_name=model_name,
            base_path=base_path.rstrip("/") or base_path,
            uid=uid,
            generation=generation,
            deleting=deleting,
            created=str(meta.get("creationTimestamp") or ""),
            target_device=_req_str(spec.get("targetDevice"), "spec.targetDevice", "CPU") or "CPU",
            version_policy=_policy(spec.get("versionPolicy")),
            batch_size=batch,
            shape=shape,
            layout=layout,
            nireq=None if spec.get("nireq") is None
            else _int(spec.get("nireq"), "spec.nireq", 0, 0, 100_000),
            plugin_config=plugin,
            storage_uri=storage_uri.rstrip("/") if storage_uri else None,
            storage_secret=storage_secret,
        )
        model.check()
        return model

    def check(self) -> None:
        """Validate the config entry exactly as the server will; raises :class:`SpecError`."""
        try:
            parse_config(render_config([self.config_entry(DEFAULT_MOUNT_PATH)]), base_dir="/")
        except ConfigError as exc:
            raise SpecError(_camel_error(str(exc))) from None


def _one_of(spec: Mapping[str, Any], single: str, per_input: str) -> str | dict[str, str] | None:
    if spec.get(single) is not None and spec.get(per_input) is not None:
        raise SpecError(f"spec.{single}: give either {single} or {per_input}, not both")
    if spec.get(per_input) is not None:
        return _str_map(spec.get(per_input), f"spec.{per_input}") or None
    return _str(spec.get(single), f"spec.{single}")


def _policy(value: Any) -> VersionPolicy:
    if value is None:
        return VersionPolicy()
    spec = _obj(value, "spec.versionPolicy")
    if len(spec) != 1 or next(iter(spec)) not in ("all", "latest", "specific"):
        raise SpecError("spec.versionPolicy: give exactly one of all, latest, specific")
    (kind, body), = spec.items()
    body = _obj(body, f"spec.versionPolicy.{kind}")
    if kind == "all":
        return VersionPolicy("all")
    if kind == "latest":
        n = _int(body.get("numVersions"), "spec.versionPolicy.latest.numVersions", 1, 1, 1000)
        return VersionPolicy("latest", num_versions=n)
    versions = body.get("versions")
    if (not isinstance(versions, list) or not versions
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                       for v in versions)):
        raise SpecError("spec.versionPolicy.specific.versions: expected a non-empty array of "
                        "version numbers >= 1")
    return VersionPolicy("specific", versions=tuple(sorted(set(versions))))


_CONFIG_TO_SPEC = {
    "batch_size": "batchSize",
    "target_device": "targetDevice",
    "plugin_config": "pluginConfig",
    "model_version_policy": "versionPolicy",
    "base_path": "basePath",  # (or storageUri)
    "name": "modelName",
}


def _camel_error(message: str) -> str:
    """Turn ``model_config_list[0].config.shape: …`` into ``spec.shape: …`` for the user."""
    text = re.sub(r"^model_config_list\[\d+\]\.config\.?", "spec.", message)
    for snake, camel in _CONFIG_TO_SPEC.items():
        text = text.replace(f"spec.{snake}", f"spec.{camel}")
    return text
