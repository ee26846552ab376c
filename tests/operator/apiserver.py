"""A stand-in Kubernetes API server for the operator's integration tests (kmock 0.8, pinned).

Run as a subprocess by ``test_integration.py``::

    python tests/operator/apiserver.py --host 127.0.0.1 --port-file /tmp/x/port

It serves the ovserve CRDs plus pods, configmaps, services, deployments, events and
namespaces over real HTTP, and fixes the gaps of kmock 0.8 that kopf and the ``kubernetes``
client trip over (see docs/operator.md, "Testing without a cluster"):

* a failed JSON-patch ``test`` op answers 422 (kmock: 500), as kopf expects;
* ``metadata.uid``, ``creationTimestamp``, ``resourceVersion`` (bumped on every write, so
  kopf's ``test`` ops on it work), ``generation`` (bumped when ``spec`` changes) and
  ``generateName``;
* list responses carry ``kind``/``apiVersion`` and honour ``labelSelector`` (``k=v,...``);
* core discovery reports ``groupVersion: v1`` (not ``/v1``);
* ``/api/v1/namespaces`` is served (kmock's path parser cannot split it) and ``default`` exists;
* requests and object histories are trimmed, so a long test does not slow the server down.

Not emulated: admission (schema validation and defaulting), spec/status isolation, owner
garbage collection, controllers, the scheduler and the kubelet (the tests play that part).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import secrets
import signal
import uuid
from pathlib import Path
from typing import Any

import jsonpatch
import kmock
from kmock._internal import enums, parsing, rendering

CORE = "v1"
RESOURCES: dict[str, dict[str, Any]] = {
    "ovserve.io/v1alpha1/inferenceservers": {
        "kind": "InferenceServer", "singular": "inferenceserver", "shortnames": {"isrv"},
        "subresources": {"status", "scale"}},
    "ovserve.io/v1alpha1/inferencemodels": {
        "kind": "InferenceModel", "singular": "inferencemodel", "shortnames": {"im"},
        "subresources": {"status"}},
    "v1/pods": {"kind": "Pod", "singular": "pod", "subresources": {"status"}},
    "v1/configmaps": {"kind": "ConfigMap", "singular": "configmap"},
    "v1/services": {"kind": "Service", "singular": "service", "subresources": {"status"}},
    "v1/events": {"kind": "Event", "singular": "event"},
    "v1/namespaces": {"kind": "Namespace", "singular": "namespace", "namespaced": False},
    "apps/v1/deployments": {"kind": "Deployment", "singular": "deployment",
                            "subresources": {"status", "scale"}},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget",
                                       "singular": "poddisruptionbudget", "shortnames": {"pdb"},
                                       "subresources": {"status"}},
}
VERBS = {"get", "list", "watch", "create", "patch", "delete"}
KEEP_REQUESTS = 200
KEEP_VERSIONS = 4

_original_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock's parser reads /api/v1/namespaces[/<name>] as a namespace without a plural."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None,
                                  parts[3] if len(parts) == 4 else None, None)
    return _original_parse_path(path)


parsing.parse_path = _parse_path


def _now() -> str:
    stamp = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
    return stamp.isoformat().replace("+00:00", "Z")


def _labels_match(obj: dict[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator with the fixes listed in the module docstring."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        for key, info in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(
                namespaced=info.get("namespaced", True), kind=info["kind"],
                singular=info["singular"], verbs=VERBS,
                shortnames=info.get("shortnames", set()),
                subresources=info.get("subresources", set()))
        self.objects["v1/namespaces", None, "default"] = self._stamp(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}, None)

    def _stamp(self, data: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        meta = data.setdefault("metadata", {})
        if namespace and not meta.get("namespace"):
            meta["namespace"] = namespace
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)}"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        return data

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:  # type: ignore[operator,index]
            return None
        return dict(self.objects[key].raw)  # type: ignore[index]

    async def _handle(self, request: rendering.Request) -> Any:
        data = request.data
        if request.resource is not None and request.action == enums.action.CREATE \
                and isinstance(data, dict):
            self._stamp(data, request.namespace)
        elif request.resource is not None and request.action == enums.action.UPDATE:
            current = self._current(request)
            version = str(next(self._versions))
            generation = int(((current or {}).get("metadata") or {}).get("generation") or 1)
            if isinstance(data, dict):
                spec_changed = "spec" in data and request.subresource is None
                meta = data.setdefault("metadata", {})
                if isinstance(meta, dict):
                    meta["resourceVersion"] = version
                    if spec_changed:
                        meta["generation"] = generation + 1
            elif isinstance(data, list):
                spec_changed = any(str(op.get("path", "")).startswith("/spec") for op in data
                                   if isinstance(op, dict)) and request.subresource is None
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
                if spec_changed:
                    data.append({"op": "add", "path": "/metadata/generation",
                                 "value": generation + 1})
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as exc:
            # A failed "test" op (kopf's optimistic concurrency) is 422 on a real API server.
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None
        finally:
            self._trim()

    def _trim(self) -> None:
        if len(self._requests) > KEEP_REQUESTS * 2:
            del self._requests[:-KEEP_REQUESTS]
        if self._errors and len(self._errors[-1]) > KEEP_REQUESTS:
            del self._errors[-1][:-10]
        for key in list(self.objects):
            history = self.objects[key].history
            if len(history) > KEEP_VERSIONS * 2:
                history[:] = list(history)[-KEEP_VERSIONS:]

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict) and request.resource is not None
        selector = request.params.get("labelSelector")
        if selector:
            payload["items"] = [o for o in payload["items"] if _labels_match(o, selector)]
        info = self.resources[request.resource]
        group, version = request.resource.group, request.resource.version
        payload["kind"] = f"{info.kind}List"
        payload["apiVersion"] = f"{group}/{version}" if group else str(version)
        payload["metadata"] = {"resourceVersion": str(next(self._versions))}
        return payload

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        payload = await super()._serve_version(request)
        if isinstance(payload, dict) and str(payload.get("groupVersion", "")).startswith("/"):
            payload["groupVersion"] = str(payload["groupVersion"]).lstrip("/")
        return payload


async def serve(host: str, port_file: Path) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ApiServer() as handler, kmock.Server(handler, host=host) as server:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(server.port))
        os.replace(tmp, port_file)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port_file))


if __name__ == "__main__":
    main()
