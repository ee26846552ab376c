"""The only module that talks to the Kubernetes API (through the ``kubernetes`` client).

:mod:`ovserve.operator.reconcile` depends on the :class:`KubeApi` protocol, never on this
implementation; unit tests pass a fake, :mod:`ovserve.operator.handlers` builds
:class:`KubernetesApi` at startup (in-cluster service account first, then ``$KUBECONFIG``).

Objects travel as plain JSON dicts (camelCase, exactly as the API serves them); the generated
model classes are not used. Owned children are written by :meth:`KubernetesApi.apply`:

* absent: ``POST`` it;
* present with the same ``ovserve.io/rendered-hash`` annotation: nothing to do;
* otherwise a JSON patch that sets our labels, annotations and ownerReferences and replaces
  ``/spec`` (``/data`` for a ConfigMap) wholesale, so a field dropped from the rendering is
  dropped from the object too (a merge patch could not remove it). The API server re-applies
  its defaults, so an unchanged pod template does not roll the pods. A Service keeps the
  addresses and node ports the API server allocated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .render import RENDERED_HASH_ANNOTATION
from .resources import GROUP, MODEL_PLURAL, SERVER_PLURAL, VERSION

log = logging.getLogger("ovserve.operator.kube")


class KubeError(RuntimeError):
    """An API call that failed; ``status`` is the HTTP status (0 when there was none)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


class KubeApi(Protocol):
    """What the reconciler needs from the API server; every object is a plain dict."""

    def get_server(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_models(self, namespace: str) -> list[dict[str, Any]]: ...

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]: ...

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None: ...

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete a child object the server no longer renders; one that is gone is fine."""


_PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    SERVER_PLURAL: f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{SERVER_PLURAL}",
    MODEL_PLURAL: f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{MODEL_PLURAL}",
}
_BODY_KEY = {"ConfigMap": "data"}


def _escape(key: str) -> str:
    """JSON-pointer escaping of one path segment (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def apply_patch(live: Mapping[str, Any], desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The JSON patch that turns ``live`` into ``desired`` for the fields the operator owns."""
    ops: list[dict[str, Any]] = []
    live_meta = live.get("metadata") or {}
    meta = desired.get("metadata") or {}
    for field in ("labels", "annotations"):
        wanted = meta.get(field) or {}
        if not wanted:
            continue
        if not live_meta.get(field):
            ops.append({"op": "add", "path": f"/metadata/{field}", "value": dict(wanted)})
            continue
        for key, value in wanted.items():
            if live_meta[field].get(key) != value:
                ops.append({"op": "add", "path": f"/metadata/{field}/{_escape(key)}",
                            "value": value})
    if meta.get("ownerReferences") and live_meta.get("ownerReferences") != meta["ownerReferences"]:
        ops.append({"op": "add", "path": "/metadata/ownerReferences",
                    "value": meta["ownerReferences"]})
    key = _BODY_KEY.get(str(desired.get("kind")), "spec")
    body = dict(desired.get(key) or {})
    if desired.get("kind") == "Service":
        body = _keep_allocated(live.get("spec") or {}, body)
    ops.append({"op": "add", "path": f"/{key}", "value": body})
    return ops


def _keep_allocated(live: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Carry the API server's allocations (cluster IPs, node ports) into a Service spec."""
    out = dict(spec)
    for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
        if field in live and field not in out:
            out[field] = live[field]
    node_ports = {p.get("name"): p.get("nodePort") for p in live.get("ports") or []
                  if p.get("nodePort")}
    if out.get("type") in ("NodePort", "LoadBalancer") and node_ports:
        out["ports"] = [
            {**p, "nodePort": node_ports[p.get("name")]}
            if p.get("name") in node_ports and "nodePort" not in p else p
            for p in out.get("ports") or []
        ]
    return out


def _rendered_hash(obj: Mapping[str, Any]) -> str | None:
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(RENDERED_HASH_ANNOTATION)
    return str(value) if value else None


class KubernetesApi:
    """:class:`KubeApi` over the official client's configured ``ApiClient`` (auth, TLS)."""

    def __init__(self, api_client: Any, timeout: float = 30.0) -> None:
        self._client = api_client
        self._timeout = timeout

    @classmethod
    def from_environment(cls, timeout: float = 30.0) -> KubernetesApi:
        """In-cluster service account first, then ``$KUBECONFIG`` / ``~/.kube/config``."""
        import kubernetes

        try:
            kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
        return cls(kubernetes.client.ApiClient(), timeout)

    def close(self) -> None:
        self._client.close()

    # -------------------------------------------------------------- raw JSON calls

    def _call(self, method: str, path: str, body: Any = None,
              content_type: str = "application/json",
              query: Sequence[tuple[str, str]] = ()) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        method, url, headers, payload, _ = self._client.param_serialize(
            method=method, resource_path=path, query_params=list(query) or None,
            header_params=headers, body=body, auth_settings=["BearerToken"],
        )
        try:
            response = self._client.call_api(method, url, header_params=headers, body=payload,
                                             _request_timeout=self._timeout)
            data = response.read()
        except Exception as exc:  # urllib3 / socket errors: no HTTP answer
            raise KubeError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            doc = json.loads(data) if data else None
        except ValueError:
            doc = None
        status = int(response.status)
        if status >= 400 and status != 404:
            message = doc.get("message") if isinstance(doc, dict) else data[:300]
            raise KubeError(status, f"{method} {path}: {message}")
        return status, doc

    def _get(self, path: str) -> dict[str, Any] | None:
        status, doc = self._call("GET", path)
        return doc if status != 404 and isinstance(doc, dict) else None

    def _list(self, path: str, query: Sequence[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        status, doc = self._call("GET", path, query=query)
        if status == 404 or not isinstance(doc, dict):
            return []
        return [item for item in doc.get("items") or [] if isinstance(item, dict)]

    # -------------------------------------------------------------- KubeApi

    def get_server(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"{_PATHS[SERVER_PLURAL].format(ns=namespace)}/{name}")

    def list_models(self, namespace: str) -> list[dict[str, Any]]:
        return self._list(_PATHS[MODEL_PLURAL].format(ns=namespace))

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(f"{_PATHS['ConfigMap'].format(ns=namespace)}/{name}")

    def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        query = [("labelSelector", ",".join(f"{k}={v}" for k, v in sorted(selector.items())))]
        return self._list(_PATHS["Pod"].format(ns=namespace), query)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        kind = str(obj["kind"])
        meta = obj["metadata"]
        base = _PATHS[kind].format(ns=meta["namespace"])
        path = f"{base}/{meta['name']}"
        live = self._get(path)
        if live is None:
            log.info("Creating %s %s/%s", kind, meta["namespace"], meta["name"])
            status, doc = self._call("POST", base, dict(obj))
            if status == 404:
                raise KubeError(404, f"POST {base}: namespace or resource not found")
            return dict(doc or {})
        if _rendered_hash(live) == _rendered_hash(obj):
            return live
        log.info("Updating %s %s/%s", kind, meta["namespace"], meta["name"])
        status, doc = self._call("PATCH", path, apply_patch(live, obj),
                                 "application/json-patch+json")
        return dict(doc or {})

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: Mapping[str, Any]) -> None:
        path = f"{_PATHS[plural].format(ns=namespace)}/{name}/status"
        code, _ = self._call("PATCH", path, {"status": dict(status)},
                             "application/merge-patch+json")
        if code == 404:
            log.debug("%s %s/%s is gone; status not written", plural, namespace, name)

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        path = f"{_PATHS['Pod'].format(ns=namespace)}/{name}"
        self._call("PATCH", path, {"metadata": {"annotations": dict(annotations)}},
                   "application/merge-patch+json")

    def delete(self, kind: str, namespace: str, name: str) -> None:
        path = f"{_PATHS[kind].format(ns=namespace)}/{name}"
        status, _ = self._call("DELETE", path)  # 404 (nothing left over) is the usual answer
        if status != 404:
            log.info("Deleted %s %s/%s", kind, namespace, name)
