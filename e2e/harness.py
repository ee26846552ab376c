"""The kind end-to-end harness: model files, CRDs, the Helm release, HTTP through a Service.

Called two ways:

* by ``make e2e`` (mk/k8s.mk) as a script, after the kind cluster exists and the images are
  loaded: ``python e2e/harness.py install`` builds the test models, copies them onto the kind
  node (the default InferenceServer reads them through a hostPath volume), applies ``crds/``
  (as the upgrade notes tell users to) and installs ``helm/ovserve``; on failure
  ``python e2e/harness.py diagnose`` prints what a person would look at first;
* by ``e2e/conftest.py`` as a module, for the same steps and the cluster helpers the tests use.

Everything goes through the ``kubernetes`` client and ``helm-python-sdk`` (the Helm Go SDK), so
the host needs only Docker and kind: no kubectl, no helm binary. The settings come from the
environment that mk/k8s.mk exports (defaults in :class:`Settings`).

HTTP to the model server goes through the API server's Service proxy
(``/api/v1/namespaces/<ns>/services/<name>:http/proxy/<path>``): the request reaches a pod
picked by the Service, exactly as an in-cluster client's would, with no port-forward process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "ovserve"
CRDS = REPO / "crds"
MODELS_ON_NODE = "/ovserve-models"
GROUP, VERSION = "ovserve.io", "v1alpha1"

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """What mk/k8s.mk passes in the environment."""

    kubeconfig: str = field(default_factory=lambda: os.environ.get(
        "KUBECONFIG", str(REPO / "e2e" / ".kubeconfig")))
    cluster: str = field(default_factory=lambda: os.environ.get("KIND_CLUSTER", "ovserve-e2e"))
    namespace: str = field(default_factory=lambda: os.environ.get("E2E_NAMESPACE", "ovserve-e2e"))
    release: str = field(default_factory=lambda: os.environ.get("E2E_RELEASE", "ovserve"))
    server_image: str = field(default_factory=lambda: os.environ.get(
        "SERVER_IMAGE", "ovserve-server:dev"))
    operator_image: str = field(default_factory=lambda: os.environ.get(
        "OPERATOR_IMAGE", "ovserve-operator:dev"))
    docker: str = field(default_factory=lambda: os.environ.get("DOCKER", "docker"))

    @property
    def node(self) -> str:
        """The kind node container (single-node cluster)."""
        return f"{self.cluster}-control-plane"


def split_image(ref: str) -> dict[str, str]:
    """``repo[:port]/name:tag`` -> chart image values (repository, tag)."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return {"repository": ref[:colon], "tag": ref[colon + 1:]}
    return {"repository": ref, "tag": "latest"}


def release_values(s: Settings) -> dict[str, Any]:
    """Chart values for the e2e release: local images, hostPath models, small requests."""
    return {
        "operator": {
            "image": {**split_image(s.operator_image), "pullPolicy": "Never"},
            "logLevel": "DEBUG",
        },
        "defaultServer": {
            "replicas": 2,
            "image": {**split_image(s.server_image), "pullPolicy": "Never"},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                          "limits": {"memory": "2Gi"}},
            "storage": {"hostPath": {"path": MODELS_ON_NODE, "type": "Directory"}},
            "metrics": {"enabled": True},
            "logLevel": "DEBUG",
        },
        "tests": {"timeoutSeconds": 180},
        "cleanup": {"timeoutSeconds": 180},
    }


# --------------------------------------------------------------------------- model files


def build_models(root: Path) -> Path:
    """Write the e2e model repository under ``root`` and return it.

    * ``adder/1``: sum = a + b; ``adder/2``: sum = a + b + 100 (tells versions apart);
      inputs ``a``, ``b`` float32 [-1, 4], output ``sum``.
    * ``broken/1``: a model.xml that is not a model, so its load fails with a real error.
    """
    sys.path.insert(0, str(REPO / "tests" / "support"))
    # the same builders the unit tests use (real OpenVINO IR, nothing downloaded)
    ovtest_models: Any = importlib.import_module("ovtest_models")

    ovtest_models.add_model(root / "adder", 1, shape=(-1, 4))
    ovtest_models.add_model(root / "adder", 2, shape=(-1, 4), offset=100.0)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "model.xml").write_text("<net name='broken'><layers><layer></net>\n")
    (broken / "model.bin").write_bytes(b"\0" * 16)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def copy_models_to_node(s: Settings, root: Path) -> None:
    """``docker cp`` the repository onto the kind node, readable by the pods' non-root user."""
    run([s.docker, "exec", s.node, "mkdir", "-p", MODELS_ON_NODE])
    run([s.docker, "cp", f"{root}/.", f"{s.node}:{MODELS_ON_NODE}"])
    run([s.docker, "exec", s.node, "chmod", "-R", "a+rX", MODELS_ON_NODE])


def run(cmd: list[str]) -> str:
    print("+", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return done.stdout


# --------------------------------------------------------------------------- cluster access


def api_client(s: Settings) -> Any:
    from kubernetes import client

    config: Any = importlib.import_module("kubernetes.config")
    configuration = client.Configuration()
    config.load_kube_config(config_file=s.kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180.0,
             every: float = 2.0) -> T:
    """Call ``probe`` until it returns something other than None; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            got = probe()
            if got is not None:
                return got
        except AssertionError as exc:
            last_error = f" (last check: {exc})"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{last_error}")
        time.sleep(every)


def apply_crds(api: Any) -> list[str]:
    """Create or replace every CRD in crds/ (the upgrade path: Helm never upgrades CRDs)."""
    import yaml
    from kubernetes import client

    ext: Any = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(CRDS.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            current = ext.read_custom_resource_definition(name)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            ext.create_custom_resource_definition(body)
        else:
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(name, body)
        names.append(name)

    def established() -> bool | None:
        for name in names:
            crd = ext.read_custom_resource_definition(name)
            conditions = {c.type: c.status for c in (crd.status.conditions or [])}
            if conditions.get("Established") != "True":
                return None
        return True

    wait_for("the CRDs to be Established", established, timeout=60)
    return names


def helm_config(s: Settings) -> Any:
    import helm_python

    return helm_python.Config(kubeconfig_path=s.kubeconfig, namespace=s.namespace)


def release_exists(s: Settings) -> bool:
    import helm_python

    with helm_config(s) as cfg:
        try:
            cfg.status(s.release)
        except helm_python.HelmNotFoundError:
            return False
        except helm_python.HelmError as exc:
            if "not found" in str(exc):
                return False
            raise
        return True


def install_release(s: Settings) -> None:
    """``helm upgrade --install --wait=legacy`` the chart with :func:`release_values`.

    The legacy wait covers the built-in kinds (the operator's Deployment); the tests wait for
    the InferenceServer's pods themselves, through the operator.
    """
    with helm_config(s) as cfg:
        if release_exists(s):
            cfg.upgrade(CHART, s.release, release_values(s), namespace=s.namespace,
                        wait="legacy", timeout=300)
        else:
            cfg.install(CHART, s.release, release_values(s), namespace=s.namespace,
                        create_namespace=True, wait="legacy", timeout=300)
    print(f"release {s.release} installed in {s.namespace}", flush=True)


def ensure_installed(s: Settings, models_dir: Path) -> None:
    """Everything ``make e2e`` does after the cluster and images: idempotent."""
    copy_models_to_node(s, build_models(models_dir))
    with api_client(s) as api:
        apply_crds(api)
    install_release(s)


# --------------------------------------------------------------------------- custom objects


class Cluster:
    """The handful of API calls the e2e tests make, bound to one namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = api
        self.ns = namespace
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.rbac: Any = client.RbacAuthorizationV1Api(api)
        self.batch: Any = client.BatchV1Api(api)
        self.ext: Any = client.ApiextensionsV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.ApiException = client.ApiException

    # --- custom resources
    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, body)
        return obj

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, plural, name)
        except self.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, name, {"spec": spec})

    def replace_spec_key(self, plural: str, name: str, key: str, value: Any) -> None:
        """Set ``spec.<key>`` to exactly ``value`` (a merge patch would merge nested maps)."""
        patch = [{"op": "add", "path": f"/spec/{key}", "value": value}]
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, name, patch,
            _content_type="application/json-patch+json")

    def delete(self, plural: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)
        except self.ApiException as exc:
            if exc.status != 404:
                raise

    def table(self, plural: str) -> list[dict[str, str]]:
        """``kubectl get <plural>`` as the API server prints it: printer columns by name."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/{plural}"
        accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
        status, body = self.raw("GET", path, accept=accept)
        assert status == 200, body
        doc = json.loads(body)
        names = [c["name"] for c in doc["columnDefinitions"]]
        return [dict(zip(names, [str(c) for c in row["cells"]], strict=True))
                for row in doc["rows"]]

    # --- raw HTTP through the API server
    def raw(self, method: str, path: str, body: Any = None, *, accept: str = "application/json",
            timeout: float = 30.0) -> tuple[int, bytes]:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.api.param_serialize(method, path, header_params=headers, body=body,
                                           auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=timeout)
        return int(response.status), bytes(response.read())

    def service_http(self, service: str, method: str, path: str, body: Any = None
                     ) -> tuple[int, Any]:
        """HTTP to a Service's ``http`` port through the API server's service proxy."""
        url = f"/api/v1/namespaces/{self.ns}/services/{service}:http/proxy/{path.lstrip('/')}"
        status, raw = self.raw(method, url, body)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    # --- pods
    def pods(self, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.ns, label_selector=selector).items)

    def pod_text(self, pod: str, path: str, port: int) -> str:
        """GET a pod's port through the API server's pod proxy (one pod, not the Service)."""
        url = f"/api/v1/namespaces/{self.ns}/pods/{pod}:{port}/proxy/{path.lstrip('/')}"
        status, raw = self.raw("GET", url, accept="*/*")
        assert status == 200, raw[:300]
        return raw.decode()


def restarts_by_pod(pods: list[Any]) -> dict[str, int]:
    """Pod uid -> container restart count: a reload must leave both unchanged."""
    return {p.metadata.uid: sum(c.restart_count for c in (p.status.container_statuses or []))
            for p in pods}


def iter_versions(im: Mapping[str, Any]) -> Iterator[tuple[int, str, str]]:
    for v in (im.get("status") or {}).get("versions") or []:
        yield int(v["version"]), str(v["state"]), str(v.get("errorMessage", ""))


# --------------------------------------------------------------------------- diagnostics


def diagnose(s: Settings) -> None:
    """Print what a person looks at first when e2e fails: objects, statuses, events, logs."""
    with api_client(s) as api:
        c = Cluster(api, s.namespace)
        for pod in c.core.list_namespaced_pod(s.namespace).items:
            states = [(cs.name, cs.ready, cs.restart_count) for cs in
                      (pod.status.container_statuses or [])]
            print(f"pod {pod.metadata.name}: {pod.status.phase} {states}")
            for container in pod.spec.containers:
                try:
                    log = c.core.read_namespaced_pod_log(pod.metadata.name, s.namespace,
                                                         container=container.name,
                                                         tail_lines=80)
                except c.ApiException as exc:
                    log = f"(no log: {exc.reason})"
                print(f"--- log {pod.metadata.name}/{container.name}\n{log}")
        for plural in ("inferenceservers", "inferencemodels"):
            items = c.custom.list_namespaced_custom_object(GROUP, VERSION, s.namespace, plural)
            for obj in items["items"]:
                print(f"{plural}/{obj['metadata']['name']}: spec={json.dumps(obj.get('spec'))}"
                      f" status={json.dumps(obj.get('status'))}")
        for ev in c.core.list_namespaced_event(s.namespace).items[-40:]:
            print(f"event {ev.type} {ev.involved_object.kind}/{ev.involved_object.name}: "
                  f"{ev.reason}: {ev.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2e/harness.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="models onto the node, crds/ applied, the chart installed")
    sub.add_parser("diagnose", help="print pods, logs, custom resources and events")
    args = parser.parse_args(argv)
    s = Settings()
    if args.command == "install":
        ensure_installed(s, REPO / "e2e" / ".models")
    else:
        diagnose(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
