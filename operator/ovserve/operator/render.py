"""Pure rendering: an InferenceServer and its InferenceModels -> config.json and child objects.

:mod:`ovserve.operator.reconcile` calls :func:`render_server` and hands the result to
:mod:`ovserve.operator.kube`; the golden tests call every function here directly. Nothing here
does I/O, reads a clock or a global, so the same specs always give the same bytes.

What a server ``default`` with one model renders to (abridged)::

    ConfigMap default-config
      metadata.annotations: {"ovserve.io/config-hash": "<sha256 of data['config.json']>"}
      data: {"config.json": "{\\n  \\"model_config_list\\": [ ... ]\\n}\\n"}
    Deployment default
      pod template: volume "config" = the ConfigMap mounted as a directory at /config
        (never subPath, so the kubelet keeps updating it), model storage read-only at /models,
        args --config_path /config/config.json --rest_port 8081 ..., probes on
        /v2/health/live and /v2/health/ready, GPU limits, non-root, read-only root filesystem
    Service default: port 8081 -> the pods' "http" port
    PodDisruptionBudget default (only when replicas > 1): maxUnavailable 1 of the pods

On SIGTERM a server pod reports not-ready at once and keeps answering for ``spec.drainSeconds``
(``--drain_seconds``), then finishes in-flight requests (up to 30 s): the pod's
``terminationGracePeriodSeconds`` is the sum plus 5 s, so the kubelet never kills it mid-drain.
The server waits by itself, so no preStop hook is needed (the image needs no ``sleep``).

The config hash is deliberately **not** in the pod template: a model-only change rewrites the
ConfigMap and is applied by a reload, while a pool change (image, resources, GPU, placement)
changes the template and rolls the pods.

Object-storage credentials (``InferenceModel.spec.storageSecret``) are environment variables,
and those are per pod: :func:`storage_credentials` keeps **one Secret per provider per server**
(s3, gs, az are independent). The oldest model that names a Secret for a provider sets it; a
model of that provider that names no Secret uses it too; a model that names a *different*
Secret for the same provider is refused (its status says which Secret the server already uses).
Adding or changing a server's Secret changes the pod template, so the pods roll; a model that
reuses the server's Secret changes only the ConfigMap. What each provider's Secret holds:

=====  =====================================================================================
s3     keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_SESSION_TOKEN,
       AWS_REGION, S3_ENDPOINT, S3_USE_HTTPS -> the env vars of the same names
gs     key ``key.json`` (a service-account key) -> mounted read-only under
       /var/run/secrets/ovserve/gs, GOOGLE_APPLICATION_CREDENTIALS points at it
az     key AZURE_STORAGE_CONNECTION_STRING -> the env var of the same name (``az://`` and
       ``azfs://`` models both read it, so they share one Secret)
=====  =====================================================================================
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ovserve.server.config import config_hash, render_config

from .resources import API_VERSION, SERVER_KIND, ModelSpec, ServerSpec

CONFIG_KEY = "config.json"
CONFIG_DIR = "/config"
TLS_DIR = "/tls"
CONTAINER_NAME = "server"
PORT_NAME = "http"
RUN_AS = 10001
CONFIG_HASH_ANNOTATION = "ovserve.io/config-hash"
RENDERED_HASH_ANNOTATION = "ovserve.io/rendered-hash"
SERVER_LABEL = "ovserve.io/server"
MANAGED_BY = "ovserve-operator"
GCS_KEY_DIR = "/var/run/secrets/ovserve/gs"
GCS_KEY_FILE = "key.json"
# Keys of a storage Secret that become env vars of the same name (optional ones may be absent).
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "S3_ENDPOINT", "S3_USE_HTTPS")
S3_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
AZURE_KEY = "AZURE_STORAGE_CONNECTION_STRING"


@dataclass(frozen=True)
class Rendered:
    """Everything one server renders to; ``rejected``: object name -> why it was left out."""

    config: bytes
    config_hash: str
    models: tuple[ModelSpec, ...]
    rejected: dict[str, str]
    config_map: dict[str, Any]
    deployment: dict[str, Any]
    service: dict[str, Any]
    # None when replicas <= 1 or spec.podDisruptionBudget.enabled is false: the reconciler then
    # deletes a PodDisruptionBudget left from before (see pdb_name).
    pdb: dict[str, Any] | None = None
    reasons: dict[str, str] = field(default_factory=dict)  # rejected name -> status reason


def config_map_name(server: str) -> str:
    return f"{server}-config"


def selector_labels(server: ServerSpec) -> dict[str, str]:
    """Labels that select the server's pods (also the Deployment's immutable selector)."""
    return {"app.kubernetes.io/name": "ovserve-server", "app.kubernetes.io/instance": server.name}


def labels(server: ServerSpec) -> dict[str, str]:
    return {
        **selector_labels(server),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SERVER_LABEL: server.name,
    }


def label_selector(server: ServerSpec) -> str:
    """The selector as a string, for ``status.selector`` (the scale subresource) and list calls."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(server).items()))


def owner_reference(server: ServerSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": SERVER_KIND,
        "name": server.name,
        "uid": server.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def select_models(models: Sequence[ModelSpec]) -> tuple[list[ModelSpec], dict[str, str]]:
    """Drop models being deleted and resolve clashing model names (the oldest object wins)."""
    kept: dict[str, ModelSpec] = {}
    rejected: dict[str, str] = {}
    for model in sorted(models, key=lambda m: (m.created, m.name)):
        if model.deleting:
            continue
        holder = kept.get(model.model_name)
        if holder is not None:
            rejected[model.name] = (
                f"model name {model.model_name!r} is already served by InferenceModel "
                f"{holder.name!r} on server {model.server!r}; choose another spec.modelName"
            )
            continue
        kept[model.model_name] = model
    return sorted(kept.values(), key=lambda m: m.model_name), rejected


def storage_credentials(models: Sequence[ModelSpec]
                        ) -> tuple[dict[str, str], dict[str, str]]:
    """The Secret each storage provider of one server's models uses, and the models refused.

    Returns ``({"s3": secret, ...}, {object name: why})``. Models are taken oldest first (as
    :func:`select_models` does), so adding a model never changes what an older one gets.
    """
    chosen: dict[str, tuple[str, str]] = {}  # scheme -> (secret, the model that set it)
    rejected: dict[str, str] = {}
    for model in sorted(models, key=lambda m: (m.created, m.name)):
        scheme, secret = model.storage_scheme, model.storage_secret
        if scheme is None or secret is None:
            continue
        held = chosen.get(scheme)
        if held is None:
            chosen[scheme] = (secret, model.name)
        elif held[0] != secret:
            rejected[model.name] = (
                f"spec.storageSecret: server {model.server!r} already reads {scheme}:// with "
                f"Secret {held[0]!r} (InferenceModel {held[1]!r}); credentials are environment "
                f"variables of the server's pods, so every {scheme}:// model of one server uses "
                f"the same Secret: use {held[0]!r}, or serve this model from another "
                "InferenceServer"
            )
    return {scheme: secret for scheme, (secret, _) in chosen.items()}, rejected


def storage_env(secrets: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                       list[dict[str, Any]]]:
    """Env vars, volumes and mounts that give the server the storage Secrets' credentials."""
    env: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []

    def from_secret(name: str, secret: str, key: str, optional: bool) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": secret, "key": key}
        if optional:
            ref["optional"] = True
        return {"name": name, "valueFrom": {"secretKeyRef": ref}}

    if "s3" in secrets:
        env += [from_secret(k, secrets["s3"], k, k not in S3_REQUIRED) for k in S3_KEYS]
    if "gs" in secrets:
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS",
                    "value": f"{GCS_KEY_DIR}/{GCS_KEY_FILE}"})
        volumes.append({"name": "gcs-credentials", "secret": {
            "secretName": secrets["gs"], "defaultMode": 0o440,
            "items": [{"key": GCS_KEY_FILE, "path": GCS_KEY_FILE}]}})
        mounts.append({"name": "gcs-credentials", "mountPath": GCS_KEY_DIR, "readOnly": True})
    if "az" in secrets:
        env.append(from_secret(AZURE_KEY, secrets["az"], AZURE_KEY, False))
    return env, volumes, mounts


def render_config_bytes(server: ServerSpec, models: Sequence[ModelSpec]) -> bytes:
    """Canonical config.json bytes: sorted by model name, so unrelated edits keep the hash."""
    return render_config([m.config_entry(server.mount_path) for m in models])


def _with_rendered_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Stamp an object with the hash of its own rendering, so unchanged objects are not patched."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    obj["metadata"].setdefault("annotations", {})[RENDERED_HASH_ANNOTATION] = digest
    return obj


def _metadata(server: ServerSpec, name: str, annotations: Mapping[str, str] | None = None
              ) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": server.namespace,
        "labels": labels(server),
        "ownerReferences": [owner_reference(server)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def config_map(server: ServerSpec, data: bytes) -> dict[str, Any]:
    return _with_rendered_hash({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(server, config_map_name(server.name),
                              {CONFIG_HASH_ANNOTATION: config_hash(data)}),
        "data": {CONFIG_KEY: data.decode()},
    })


def server_args(server: ServerSpec) -> list[str]:
    """OVMS-named flags of the server container."""
    args = [
        "--config_path", f"{CONFIG_DIR}/{CONFIG_KEY}",
        "--rest_port", str(server.rest_port),
        "--rest_bind_address", "0.0.0.0",
        "--file_system_poll_wait_seconds", str(server.poll_seconds),
        "--log_level", server.log_level,
    ]
    if server.metrics_enabled:
        args.append("--metrics_enable")
        if server.metrics_list:
            args += ["--metrics_list", ",".join(server.metrics_list)]
    if server.tls_secret:
        args += ["--ssl_certificate", f"{TLS_DIR}/tls.crt",
                 "--ssl_private_key", f"{TLS_DIR}/tls.key"]
    if server.compile_cache is not None:
        args += ["--cache_dir", server.compile_cache.mount_path]
    args += ["--drain_seconds", str(server.drain_seconds)]
    return args


def _probe(server: ServerSpec, path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": server.scheme.upper()},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def _volumes(server: ServerSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    # The config is mounted as a directory: a subPath mount would never see an update.
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": config_map_name(server.name)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    storage = server.storage
    if storage is not None:
        if storage.claim_name:
            volumes.append({"name": "models", "persistentVolumeClaim": {
                "claimName": storage.claim_name, "readOnly": True}})
        else:
            volumes.append({"name": "models", "hostPath": {
                "path": storage.host_path, "type": storage.host_path_type}})
        mount: dict[str, Any] = {"name": "models", "mountPath": storage.mount_path,
                                 "readOnly": True}
        if storage.sub_path:
            mount["subPath"] = storage.sub_path
        mounts.append(mount)
    if server.tls_secret:
        volumes.append({"name": "tls", "secret": {"secretName": server.tls_secret,
                                                   "defaultMode": 0o440}})
        mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
    if server.compile_cache is not None:
        volumes.append(server.compile_cache.volume())
        mounts.append({"name": "cache", "mountPath": server.compile_cache.mount_path})
    volumes += [dict(v) for v in server.volumes]
    mounts += [dict(m) for m in server.volume_mounts]
    return volumes, mounts


def _resources(server: ServerSpec) -> dict[str, Any]:
    limits: dict[str, str | int] = dict(server.limits)
    if server.gpu_count:
        limits[server.gpu_resource] = server.gpu_count
    out: dict[str, Any] = {}
    if server.requests:
        out["requests"] = dict(server.requests)
    if limits:
        out["limits"] = limits
    return out


def pod_annotations(server: ServerSpec) -> dict[str, str]:
    annotations = dict(server.pod_annotations)
    if server.metrics_enabled:
        annotations.update({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(server.rest_port),
            "prometheus.io/path": "/metrics",
            "prometheus.io/scheme": server.scheme,
        })
    return annotations


def deployment(server: ServerSpec, storage_secrets: Mapping[str, str] | None = None
               ) -> dict[str, Any]:
    volumes, mounts = _volumes(server)
    env, secret_volumes, secret_mounts = storage_env(storage_secrets or {})
    volumes += secret_volumes
    mounts += secret_mounts
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": server.image,
        "imagePullPolicy": server.image_pull_policy,
        "command": ["ovserve-server"],
        "args": server_args(server),
        "ports": [{"name": PORT_NAME, "containerPort": server.rest_port, "protocol": "TCP"}],
        "startupProbe": _probe(server, "/v2/health/live", 2, 30),
        "livenessProbe": _probe(server, "/v2/health/live", 10, 3),
        "readinessProbe": _probe(server, "/v2/health/ready", 5, 3),
        "securityContext": dict(server.container_security_context)
        if server.container_security_context is not None else {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    env = env + [dict(e) for e in server.env]
    if env:
        container["env"] = env
    if server.env_from:
        container["envFrom"] = [dict(e) for e in server.env_from]
    resources = _resources(server)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Replaced whole by spec.podSecurityContext (OpenShift's restricted SCC: leave out
        # runAsUser/runAsGroup/fsGroup; Intel GPUs: add the render group to supplementalGroups).
        "securityContext": dict(server.pod_security_context)
        if server.pod_security_context is not None else {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        # Drain (--drain_seconds), then in-flight requests (30 s), then exit.
        "terminationGracePeriodSeconds": server.termination_grace_seconds,
        "containers": [container],
        "volumes": volumes,
    }
    if server.service_account:
        pod["serviceAccountName"] = server.service_account
    if server.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in server.image_pull_secrets]
    if server.node_selector:
        pod["nodeSelector"] = dict(server.node_selector)
    if server.tolerations:
        pod["tolerations"] = [dict(t) for t in server.tolerations]
    if server.affinity:
        pod["affinity"] = dict(server.affinity)
    if server.topology_spread_constraints:
        # A constraint without a labelSelector spreads this server's own pods.
        pod["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": selector_labels(server)}, **c}
            for c in server.topology_spread_constraints
        ]
    if server.priority_class_name:
        pod["priorityClassName"] = server.priority_class_name
    template_meta: dict[str, Any] = {"labels": {**server.pod_labels, **labels(server)}}
    annotations = pod_annotations(server)
    if annotations:
        template_meta["annotations"] = annotations
    return _with_rendered_hash({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(server, server.name),
        "spec": {
            "replicas": server.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(server)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": pod},
        },
    })


def service(server: ServerSpec) -> dict[str, Any]:
    return _with_rendered_hash({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(server, server.name),
        "spec": {
            "type": server.service_type,
            "selector": selector_labels(server),
            "ports": [{"name": PORT_NAME, "port": server.rest_port, "targetPort": PORT_NAME,
                       "protocol": "TCP"}],
        },
    })


def pdb_name(server: ServerSpec) -> str:
    return server.name


def pod_disruption_budget(server: ServerSpec) -> dict[str, Any] | None:
    """The server's PodDisruptionBudget, or None when one pod (or none) runs or it is off."""
    budget = server.disruption
    if server.replicas <= 1 or not budget.enabled:
        return None
    spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(server)}}
    if budget.min_available is not None:
        spec["minAvailable"] = budget.min_available
    else:
        spec["maxUnavailable"] = budget.max_unavailable
    return _with_rendered_hash({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(server, pdb_name(server)),
        "spec": spec,
    })


def render_server(server: ServerSpec, models: Sequence[ModelSpec]) -> Rendered:
    """Render one server: the models it serves, config.json, ConfigMap, Deployment, Service."""
    kept, rejected = select_models([m for m in models if m.server == server.name])
    secrets, refused = storage_credentials(kept)
    if refused:
        rejected = {**rejected, **refused}
        kept = [m for m in kept if m.name not in refused]
    data = render_config_bytes(server, kept)
    return Rendered(
        config=data,
        config_hash=config_hash(data),
        models=tuple(kept),
        rejected=rejected,
        config_map=config_map(server, data),
        deployment=deployment(server, secrets),
        reasons={**dict.fromkeys(rejected, "NameConflict"),
                 **dict.fromkeys(refused, "StorageSecretConflict")},
        service=service(server),
        pdb=pod_disruption_budget(server),
    )
