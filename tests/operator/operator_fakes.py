"""Test doubles and object builders shared by the operator tests (imported by name: the
operator conftest puts this folder on ``sys.path``).

``FakeKube`` is an in-memory :class:`ovserve.operator.kube.KubeApi`; ``FakePods`` a scripted
:class:`ovserve.operator.reload.PodClient`; the ``*_body`` functions build API objects.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ovserve.operator.reload import PodReply


def server_body(name: str = "default", namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ovserve.io/v1alpha1",
        "kind": "InferenceServer",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "generation": 1},
        "spec": spec,
    }


def model_body(name: str = "resnet", namespace: str = "ml", created: str = "2026-01-01T00:00:00Z",
               **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ovserve.io/v1alpha1",
        "kind": "InferenceModel",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                     "generation": 1, "creationTimestamp": created},
        "spec": spec,
    }


def pod_body(name: str, ip: str, server: str = "default", namespace: str = "ml",
             ready: bool = True, port: int = 8081, annotations: Mapping[str, str] | None = None
             ) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "annotations": dict(annotations or {}),
            "labels": {"app.kubernetes.io/name": "ovserve-server",
                       "app.kubernetes.io/instance": server},
        },
        "spec": {"containers": [{"name": "server", "ports": [
            {"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeKube:
    """An in-memory :class:`ovserve.operator.kube.KubeApi` that records every write."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], dict[str, Any]] = {}
        self.models: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.children: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[tuple[str, str]] = []  # (kind, name) per write that changed something
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []
        self.nudges: list[tuple[str, dict[str, str]]] = []

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        {"InferenceServer": self.servers, "InferenceModel": self.models,
         "Pod": self.pods}[body["kind"]][key] = body
        return body

    def get_server(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.servers.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def list_models(self, namespace: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(m) for (ns, _), m in self.models.items() if ns == namespace]

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.children.get(("ConfigMap", namespace, name))
        return copy.deepcopy(found) if found else None

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        return [copy.deepcopy(p) for (ns, _), p in self.pods.items() if ns == namespace]

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        old = self.children.get(key)
        if old != obj:
            self.applied.append((str(obj["kind"]), str(meta["name"])))
            self.children[key] = copy.deepcopy(dict(obj))
        return copy.deepcopy(dict(obj))

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None:
        store = self.servers if plural == "inferenceservers" else self.models
        if (namespace, name) in store:
            store[(namespace, name)]["status"] = copy.deepcopy(dict(status))
        self.statuses.append((plural, name, copy.deepcopy(dict(status))))

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        pod = self.pods[(namespace, name)]
        pod["metadata"].setdefault("annotations", {}).update(annotations)
        self.nudges.append((name, dict(annotations)))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        if self.children.pop((kind, namespace, name), None) is not None:
            self.applied.append((f"-{kind}", name))

    def config_hash(self, namespace: str = "ml", server: str = "default") -> str:
        cm = self.children[("ConfigMap", namespace, f"{server}-config")]
        return str(cm["metadata"]["annotations"]["ovserve.io/config-hash"])


def ovms_body(models: Mapping[str, list[tuple[int, str, str, str]]]) -> dict[str, Any]:
    """Build OVMS's /v1/config body from {model: [(version, state, code, message)]}."""
    return {
        name: {"model_version_status": [
            {"version": str(v), "state": state,
             "status": {"error_code": code, "error_message": message}}
            for v, state, code, message in versions]}
        for name, versions in models.items()
    }


class FakePods:
    """A :class:`ovserve.operator.reload.PodClient` whose pods follow a script.

    ``on_disk[url]`` is the hash a pod would load on reload (what the "kubelet" delivered);
    ``applied[url]`` what it serves now; ``bodies[url]`` its /v1/config body.
    """

    def __init__(self) -> None:
        self.on_disk: dict[str, str] = {}
        self.applied: dict[str, str] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.down: set[str] = set()
        self.reload_error: dict[str, tuple[int, str]] = {}
        self.calls: list[tuple[str, str]] = []
        self.body_for: Callable[[str, str], dict[str, Any]] | None = None
        self.model_errors: dict[str, str] = {}  # model name -> GET /v1/models/<name>'s 404 error

    def _body(self, url: str) -> dict[str, Any]:
        if self.body_for is not None:
            return self.body_for(url, self.applied.get(url, ""))
        return self.bodies.get(url, {})

    def get_config(self, url: str) -> PodReply:
        self.calls.append(("GET", url))
        if url in self.down:
            return PodReply(0, error="ConnectionRefusedError: [Errno 111] Connection refused")
        return PodReply(200, self.applied.get(url), self._body(url))

    def reload(self, url: str) -> PodReply:
        self.calls.append(("POST", url))
        if url in self.down:
            return PodReply(0, error="ConnectionRefusedError: [Errno 111] Connection refused")
        if url in self.reload_error:
            code, text = self.reload_error[url]
            return PodReply(code, self.applied.get(url), {"error": text})
        changed = self.applied.get(url) != self.on_disk.get(url)
        if url in self.on_disk:
            self.applied[url] = self.on_disk[url]
        return PodReply(201 if changed else 200, self.applied.get(url), self._body(url))

    def model_status(self, url: str, name: str) -> PodReply:
        self.calls.append(("GET", f"{url}/v1/models/{name}"))
        if name in self.model_errors:
            return PodReply(404, None, {"error": self.model_errors[name]})
        return PodReply(200, None, {"model_version_status": []})
