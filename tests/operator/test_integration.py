"""The operator end to end: kopf runs the real handlers, pods are real ovserve-server processes.

Per module: a stand-in API server (``apiserver.py``, kmock over HTTP) and the real
``ovserve-operator`` console script watching all namespaces with short retry and status
periods. Per test: a fresh namespace, and a :class:`Kubelet` thread that plays the kubelet for
the server's Deployment — it creates the Pod objects, starts one ``ovserve-server`` per pod on
127.0.0.2, 127.0.0.3 (all of 127.0.0.0/8 is loopback) with the ConfigMap's bytes in the pod's
config folder, marks pods Ready with their IP, and copies later ConfigMap changes into the
folders — late on purpose for chosen pods, which only catch up after the operator nudged them.
The servers run with ``--file_system_poll_wait_seconds 0``, so only the operator's
``POST /v1/config/reload`` makes them load a new config.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ovtest_models
import pytest
import requests
from kstatus import kstatus
from ovtest_server import ServerProcess

from ovserve.operator.reconcile import NUDGE_AT, NUDGE_COUNT, NUDGE_HASH
from ovserve.operator.render import CONFIG_HASH_ANNOTATION, RENDERED_HASH_ANNOTATION

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
IPS = ("127.0.0.2", "127.0.0.3")
WAIT = 60.0
STATUS_INTERVAL = 30  # the operator's --status-interval here; tests must not wait for it
GROUP = "/apis/ovserve.io/v1alpha1"
PATHS = {
    "inferenceservers": GROUP, "inferencemodels": GROUP, "deployments": "/apis/apps/v1",
    "pods": "/api/v1", "configmaps": "/api/v1", "services": "/api/v1",
}
_namespaces = itertools.count(1)


class Api:
    """Plain JSON calls to the stand-in API server (what kubectl would do)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def url(self, plural: str, namespace: str, name: str | None = None,
            sub: str | None = None) -> str:
        url = f"{self.base}{PATHS[plural]}/namespaces/{namespace}/{plural}"
        return "/".join(filter(None, (url, name, sub)))

    def create(self, plural: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        reply = self.http.post(self.url(plural, namespace), json=obj, timeout=10)
        reply.raise_for_status()
        return dict(reply.json())

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        reply = self.http.get(self.url(plural, namespace, name), timeout=10)
        if reply.status_code == 404:
            return None
        reply.raise_for_status()
        return dict(reply.json())

    def patch(self, plural: str, namespace: str, name: str, patch: dict[str, Any],
              sub: str | None = None) -> dict[str, Any]:
        reply = self.http.patch(self.url(plural, namespace, name, sub), json=patch, timeout=10,
                                headers={"Content-Type": "application/merge-patch+json"})
        reply.raise_for_status()
        return dict(reply.json())

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.http.delete(self.url(plural, namespace, name), timeout=10).raise_for_status()


class Kubelet(threading.Thread):
    """Plays Deployment controller + kubelet for one InferenceServer (see module docstring)."""

    def __init__(self, api: Api, namespace: str, server: str, workdir: Path,
                 late: dict[str, int] | None = None, delay: float = 0.0) -> None:
        super().__init__(daemon=True, name=f"kubelet-{namespace}")
        self.api, self.namespace, self.server, self.workdir = api, namespace, server, workdir
        self.late = dict(late or {})  # pod name -> nudges it needs before it syncs
        self.delay = delay  # seconds a ConfigMap change takes to reach every pod's folder
        self.first_seen: dict[str, float] = {}  # ConfigMap bytes -> when first seen
        self.ready_at: dict[str, float] = {}  # pod name -> time.monotonic() it turned Ready
        self.servers: dict[str, ServerProcess] = {}
        self.nudges_seen: dict[str, list[str]] = {}
        self.synced_after_nudges: dict[str, int] = {}
        self.ready: set[str] = set()
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.15):
            try:
                self.tick()
            except Exception as exc:  # surfaced by the tests through .errors
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        for server in self.servers.values():
            server.stop()

    def config_file(self, pod: str) -> Path:
        return self.workdir / pod / "config.json"

    def tick(self) -> None:
        deployment = self.api.get("deployments", self.namespace, self.server)
        config_map = self.api.get("configmaps", self.namespace, f"{self.server}-config")
        if deployment is None or config_map is None:
            return
        data = config_map["data"]["config.json"]
        self.first_seen.setdefault(data, time.monotonic())
        template = deployment["spec"]["template"]
        for index in range(int(deployment["spec"]["replicas"])):
            name = f"{self.server}-{index}"
            if name not in self.servers:
                self.start_pod(name, IPS[index], template, data)
            elif name not in self.ready and self.is_up(name):
                self.mark_ready(name, IPS[index])
            else:
                self.sync(name, data)

    def start_pod(self, name: str, ip: str, template: dict[str, Any], data: str) -> None:
        folder = self.workdir / name
        folder.mkdir(parents=True)
        self.config_file(name).write_text(data)  # a new pod mounts the current ConfigMap
        self.api.create("pods", self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": template["metadata"]["labels"],
                         "annotations": template["metadata"].get("annotations", {})},
            "spec": template["spec"],
            "status": {"phase": "Pending"},
        })
        port = int(template["spec"]["containers"][0]["ports"][0]["containerPort"])
        log_path = folder / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ovserve.server", "--rest_bind_address", ip,
                 "--rest_port", str(port), "--config_path", str(self.config_file(name)),
                 "--file_system_poll_wait_seconds", "0", "--log_level", "INFO",
                 "--metrics_enable"],
                stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        server = ServerProcess(proc, ip, port, log_path)
        self.servers[name] = server

    def is_up(self, name: str) -> bool:
        server = self.servers[name]
        if server.proc.poll() is not None:
            raise RuntimeError(f"pod {name} exited:\n{server.log()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200
        return False

    def mark_ready(self, name: str, ip: str) -> None:
        self.api.patch("pods", self.namespace, name, {"status": {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}]}}, sub="status")
        self.ready_at[name] = time.monotonic()
        self.ready.add(name)

    def sync(self, name: str, data: str) -> None:
        path = self.config_file(name)
        if path.read_text() == data:
            return
        if time.monotonic() - self.first_seen[data] < self.delay:
            return
        if name in self.late:
            pod = self.api.get("pods", self.namespace, name) or {}
            nudge = (pod.get("metadata", {}).get("annotations") or {}).get(NUDGE_COUNT)
            seen = self.nudges_seen.setdefault(name, [])
            if nudge and nudge not in seen:
                seen.append(nudge)
            if len(seen) < self.late[name]:
                return
            self.synced_after_nudges[name] = len(seen)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(data)
        os.replace(tmp, path)

    def pids(self) -> dict[str, int]:
        return {name: s.proc.pid for name, s in self.servers.items()}

    def reloads(self, name: str) -> int:
        """``POST /v1/config/reload`` calls pod ``name`` has received (its own metrics)."""
        text = requests.get(f"{self.servers[name].url}/metrics", timeout=10).text
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("ovserve_config_reloads_total")))


def free_port_on_all(hosts: tuple[str, ...]) -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((hosts[0], 0))
            port = int(probe.getsockname()[1])
        ok = True
        for host in hosts[1:]:
            with socket.socket() as other:
                try:
                    other.bind((host, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no port free on all test addresses")


@contextlib.contextmanager
def running_apiserver(folder: Path) -> Iterator[str]:
    """Run the stand-in API server until the block ends; yields its base URL."""
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "port"
    log = (folder / "apiserver.log").open("wb")
    proc = subprocess.Popen([sys.executable, str(HERE / "apiserver.py"), "--port-file",
                             str(port_file)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, (folder / "apiserver.log").read_text()
            assert time.monotonic() < deadline, "the stand-in API server did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_apiserver(tmp_path_factory.mktemp("apiserver")) as url:
        yield url


@contextlib.contextmanager
def running_operator(apiserver: str, folder: Path) -> Iterator[Path]:
    """Run ``ovserve-operator`` against the stand-in until the block ends; yields its log.

    The port of its ``/metrics`` is in ``folder / "metrics-port"``; its log is appended to, so
    a restarted operator (a second block on the same folder) keeps one log.
    """
    folder.mkdir(parents=True, exist_ok=True)
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters: [{{name: kmock, cluster: {{server: '{apiserver}'}}}}]\n"
        "users: [{name: test, user: {token: test}}]\n"
        "contexts: [{name: kmock, context: {cluster: kmock, user: test}}]\n"
        "current-context: kmock\n")
    liveness = free_port_on_all(("127.0.0.1",))
    metrics = free_port_on_all(("127.0.0.1",))
    (folder / "metrics-port").write_text(str(metrics))
    log_path = folder / "operator.log"
    log = log_path.open("ab")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [str(BIN / "ovserve-operator"), "--all-namespaces", "--no-events",
         "--liveness-host", "127.0.0.1", "--liveness-port", str(liveness),
         "--metrics-host", "127.0.0.1", "--metrics-port", str(metrics), "--log-format", "json",
         # A long refresh period: everything below converges on watch events and retries.
         "--status-interval", str(STATUS_INTERVAL), "--retry-delay", "0.3",
         "--max-retry-delay", "1",
         "--reload-timeout", "40", "--http-timeout", "30"],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{liveness}/healthz", timeout=1).ok:
                    break
            assert time.monotonic() < deadline, f"no /healthz:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield log_path
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def operator_log(apiserver: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run ``ovserve-operator`` against the stand-in; yields the path of its log."""
    with running_operator(apiserver, tmp_path_factory.mktemp("operator")) as log_path:
        yield log_path


@pytest.fixture(scope="module")
def operator_metrics(operator_log: Path) -> str:
    """The URL of the operator's own ``/metrics``."""
    return f"http://127.0.0.1:{(operator_log.parent / 'metrics-port').read_text()}/metrics"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    ovtest_models.add_model(root / "add", version=1)
    ovtest_models.add_model(root / "add", version=2, offset=10.0)
    broken = root / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.xml").write_text("<net>this is not an OpenVINO IR</net>")
    (broken / "model.bin").write_bytes(b"\0" * 8)
    return root


class Cluster:
    """One test's namespace: API helpers, the kubelet, waiting with diagnostics."""

    def __init__(self, api: Api, namespace: str, models: Path, workdir: Path,
                 operator_log: Path) -> None:
        self.api, self.namespace, self.models = api, namespace, models
        self.workdir, self.operator_log = workdir, operator_log
        self.kubelet: Kubelet | None = None

    def start_kubelet(self, late: dict[str, int] | None = None, delay: float = 0.0) -> Kubelet:
        self.kubelet = Kubelet(self.api, self.namespace, "default", self.workdir / "pods", late,
                               delay)
        self.kubelet.start()
        return self.kubelet

    def create_server(self, replicas: int = 2, **spec: Any) -> dict[str, Any]:
        body = {"replicas": replicas, "restPort": free_port_on_all(IPS),
                "fileSystemPollWaitSeconds": 0,
                "storage": {"hostPath": {"path": str(self.models)},
                            "mountPath": str(self.models)}, **spec}
        return self.api.create("inferenceservers", self.namespace, {
            "apiVersion": "ovserve.io/v1alpha1", "kind": "InferenceServer",
            "metadata": {"name": "default"}, "spec": body})

    def create_model(self, name: str, **spec: Any) -> dict[str, Any]:
        return self.api.create("inferencemodels", self.namespace, {
            "apiVersion": "ovserve.io/v1alpha1", "kind": "InferenceModel",
            "metadata": {"name": name}, "spec": spec})

    def model(self, name: str) -> dict[str, Any]:
        return self.api.get("inferencemodels", self.namespace, name) or {}

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if self.kubelet is not None and self.kubelet.errors:
                pytest.fail(f"kubelet failed: {self.kubelet.errors[-1]}")
            if time.monotonic() > deadline:
                log = self.operator_log.read_text()[-6000:]
                pytest.fail(f"timed out waiting for {what}; operator log tail:\n{log}")
            time.sleep(0.2)

    def wait_model(self, name: str, state: str, **fields: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.model(name).get("status") or {}
            ok = st.get("state") == state and all(st.get(k) == v for k, v in fields.items())
            return st if ok else None
        return dict(self.wait_for(f"InferenceModel {name} {state} {fields}", check))

    def pod_config(self, pod: str) -> tuple[str | None, dict[str, Any]]:
        assert self.kubelet is not None
        reply = requests.get(f"{self.kubelet.servers[pod].url}/v1/config", timeout=10)
        reply.raise_for_status()
        return reply.headers.get("X-Ovserve-Config-Hash"), dict(reply.json())

    def config_hash(self) -> str:
        cm = self.api.get("configmaps", self.namespace, "default-config")
        assert cm is not None
        return str(cm["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])


@pytest.fixture()
def cluster(apiserver: str, operator_log: Path, models: Path,
            tmp_path: Path) -> Iterator[Cluster]:
    namespace = f"it-{next(_namespaces)}"
    env = Cluster(Api(apiserver), namespace, models, tmp_path, operator_log)
    try:
        yield env
    finally:
        if env.kubelet is not None:
            env.kubelet.stop()


def versions(body: dict[str, Any], model: str) -> dict[int, str]:
    return {int(v["version"]): v["state"]
            for v in body.get(model, {}).get("model_version_status", [])}


def test_apply_makes_the_model_available_on_every_pod(cluster: Cluster) -> None:
    server = cluster.create_server(replicas=2)
    cluster.start_kubelet()
    cluster.create_model("add")
    status = cluster.wait_model("add", "Available", readyPods="2/2")
    assert status["availableVersions"] == "2"
    assert status["observedGeneration"] == cluster.model("add")["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Reconciling": "False", "Stalled": "False", "ConfigApplied": "True"}
    expected = cluster.config_hash()
    assert status["configHash"] == expected
    for pod in ("default-0", "default-1"):
        digest, body = cluster.pod_config(pod)
        assert digest == expected and versions(body, "add") == {2: "AVAILABLE"}
    assert cluster.kubelet is not None
    infer = requests.post(f"{cluster.kubelet.servers['default-1'].url}/v2/models/add/infer",
                          timeout=10, json={"inputs": [
                              {"name": n, "shape": [1, 2, 2], "datatype": "FP32",
                               "data": [1, 2, 3, 4]} for n in ("a", "b")]})
    assert infer.json()["outputs"][0]["data"] == [12, 14, 16, 18]  # version 2 adds 10
    srv = cluster.wait_for("InferenceServer status", lambda: (cluster.api.get(
        "inferenceservers", cluster.namespace, "default") or {}).get("status", {}).get(
        "configHash") == expected and cluster.api.get("inferenceservers", cluster.namespace,
                                                      "default"))
    assert (srv["status"]["readyReplicas"], srv["status"]["models"]) == (2, 1)
    for plural, name in (("configmaps", "default-config"), ("deployments", "default"),
                         ("services", "default")):
        child = cluster.api.get(plural, cluster.namespace, name)
        assert child is not None
        assert child["metadata"]["ownerReferences"][0]["uid"] == server["metadata"]["uid"]


def test_spec_edit_reloads_without_restarting_pods(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    kubelet = cluster.start_kubelet()
    cluster.create_model("add")
    cluster.wait_model("add", "Available", readyPods="2/2")
    pids = kubelet.pids()
    deployment = cluster.api.get("deployments", cluster.namespace, "default")
    assert deployment is not None

    cluster.api.patch("inferencemodels", cluster.namespace, "add",
                      {"spec": {"versionPolicy": {"all": {}}}})
    status = cluster.wait_model("add", "Available", availableVersions="1,2", readyPods="2/2")
    assert status["observedGeneration"] == 2
    assert kubelet.pids() == pids
    assert all(s.proc.poll() is None for s in kubelet.servers.values())
    after = cluster.api.get("deployments", cluster.namespace, "default")
    assert after is not None
    assert (after["metadata"]["annotations"][RENDERED_HASH_ANNOTATION]
            == deployment["metadata"]["annotations"][RENDERED_HASH_ANNOTATION])
    for pod in ("default-0", "default-1"):
        assert versions(cluster.pod_config(pod)[1], "add") == {1: "AVAILABLE", 2: "AVAILABLE"}


def test_stale_pod_is_nudged_retried_and_converges(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    kubelet = cluster.start_kubelet(late={"default-1": 3})
    cluster.wait_for("both pods ready", lambda: len(kubelet.ready) == 2)
    cluster.create_model("add")  # the ConfigMap changes while both pods run
    cluster.wait_model("add", "Available", readyPods="2/2")
    expected = cluster.config_hash()
    # default-1 only took the new bytes after three distinct nudges, i.e. three retries.
    assert kubelet.synced_after_nudges == {"default-1": 3}
    pod = cluster.api.get("pods", cluster.namespace, "default-1")
    assert pod is not None
    annotations = pod["metadata"]["annotations"]
    assert annotations[NUDGE_HASH] == expected and float(annotations[NUDGE_AT]) > 0
    log = cluster.operator_log.read_text()
    assert re.search(rf"{cluster.namespace}/default: waiting for pod\(s\) (default-0, )?"
                     rf"default-1 to see config {expected[:12]}; retrying in", log)
    assert cluster.pod_config("default-1")[0] == expected
    assert cluster.pod_config("default-0")[0] == expected


def test_failing_model_reports_the_servers_error_text(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    cluster.start_kubelet()
    cluster.create_model("broken")
    status = cluster.wait_model("broken", "Failed")
    _, body = cluster.pod_config("default-0")
    (entry,) = body["broken"]["model_version_status"]
    error = entry["status"]["error_message"]
    assert entry["state"] == "LOADING" and entry["status"]["error_code"] == "UNKNOWN"
    assert error and error in status["message"]
    assert status["message"].startswith("version 1 failed to load on pod default-")
    assert status["versions"][0]["errorMessage"] == error
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Ready"] == "Failed"


def test_delete_unloads_the_model_everywhere(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    cluster.start_kubelet()
    cluster.create_model("add")
    cluster.create_model("keep", basePath="add")
    cluster.wait_model("add", "Available", readyPods="2/2")
    cluster.wait_model("keep", "Available", readyPods="2/2")
    assert cluster.model("add")["metadata"]["finalizers"] == ["ovserve.io/finalizer"]

    cluster.api.delete("inferencemodels", cluster.namespace, "add")
    cluster.wait_for("the finalizer to release the model",
                     lambda: cluster.api.get("inferencemodels", cluster.namespace, "add") is None)
    # The finalizer is only removed once every ready pod applied the config without the model.
    expected = cluster.config_hash()
    for pod in ("default-0", "default-1"):
        digest, body = cluster.pod_config(pod)
        assert digest == expected
        assert "add" not in body and versions(body, "keep") == {2: "AVAILABLE"}
    cm = cluster.api.get("configmaps", cluster.namespace, "default-config")
    assert cm is not None and '"name": "add"' not in cm["data"]["config.json"]


def test_model_of_a_missing_server_waits_and_invalid_spec_is_reported(cluster: Cluster) -> None:
    cluster.create_model("orphan", server="nowhere")
    pending = cluster.wait_model("orphan", "Pending")
    assert pending["message"] == (f"InferenceServer 'nowhere' not found in namespace "
                                  f"{cluster.namespace!r}; the model waits for it")
    cluster.create_model("zero", server="nowhere", shape="(1,0,2)")
    failed = cluster.wait_model("zero", "Failed")
    assert failed["message"] == "spec.shape: dimension 0 must be positive or -1"
    assert {c["type"]: c["reason"] for c in failed["conditions"]}["Ready"] == "InvalidSpec"


# ---------------------------------------------------------------- status during changes


def conds(st: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in st.get("conditions") or []}


def test_available_within_seconds_of_pods_ready_and_edits_apply_at_once(
        cluster: Cluster) -> None:
    # The refresh timer is 30 s here: only pod events and the operator's own retries can make
    # this converge in seconds.
    cluster.create_model("add")
    cluster.create_server(replicas=2)
    # (kstatus calls an object without any status Current; the first status is written at once.)
    cluster.wait_for("a first status", lambda: cluster.model("add").get("status"))
    assert kstatus(cluster.model("add")) == "InProgress"
    kubelet = cluster.start_kubelet()
    cluster.wait_model("add", "Available", readyPods="2/2")
    available = time.monotonic()
    lag = available - max(kubelet.ready_at.values())
    print(f"\napply -> Available: {lag:.2f} s after the last pod turned Ready")
    assert lag < 4.0
    model = cluster.model("add")
    assert kstatus(model) == "Current"
    server = cluster.api.get("inferenceservers", cluster.namespace, "default") or {}
    cluster.wait_for("the server Current", lambda: kstatus(
        cluster.api.get("inferenceservers", cluster.namespace, "default") or {}) == "Current")

    edited = time.monotonic()
    cluster.api.patch("inferencemodels", cluster.namespace, "add",
                      {"spec": {"versionPolicy": {"all": {}}}})
    # Until the outcome of generation 2 is known, kstatus must not call it Current.
    states = []
    while True:
        body = cluster.model("add")
        st = body.get("status") or {}
        states.append(kstatus(body))
        if st.get("availableVersions") == "1,2" and st.get("state") == "Available":
            break
        assert time.monotonic() - edited < WAIT, st
        time.sleep(0.05)
    took = time.monotonic() - edited
    print(f"edit -> Available with the new versions: {took:.2f} s")
    # Includes the kubelet's copy (polled every 0.15 s here), the reload and loading version 1
    # on both pods; measured 1.6-3.7 s, and 6.6 s once under heavy load, on a shared 2-core
    # machine (the refresh timer alone would take 30 s).
    assert took < 10.0
    assert set(states[:-1]) <= {"InProgress"} and states[-1] == "Current"
    assert states[0] == "InProgress"  # observedGeneration 1 != generation 2 at once
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"] == 2
    assert server["status"]["observedGeneration"] == server["metadata"]["generation"]


def test_unchanged_model_stays_available_while_another_model_is_added(
        cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    cluster.start_kubelet(delay=3.0)  # every ConfigMap change takes 3 s to reach the pods
    cluster.create_model("add")
    cluster.wait_model("add", "Available", readyPods="2/2")
    cluster.create_model("keep", basePath="add")
    seen: list[tuple[str, str, str]] = []
    other: list[str] = []
    deadline = time.monotonic() + WAIT
    while True:
        body = cluster.model("add")
        st = body["status"]
        seen.append((st["state"], st["readyPods"], kstatus(body)))
        keep = cluster.model("keep").get("status") or {}
        other.append(str(keep.get("state")))
        if keep.get("state") == "Available" and keep.get("readyPods") == "2/2":
            break
        assert time.monotonic() < deadline, (seen[-3:], keep)
        time.sleep(0.1)
    assert set(seen) == {("Available", "2/2", "Current")}
    assert len([s for s in other if s != "Available"]) >= 10  # the other model did wait ~3 s
    assert conds(cluster.model("add")["status"])["Ready"] == ("True", "Available")


def test_server_spec_turning_invalid_shows_what_its_pods_serve(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)
    cluster.start_kubelet()
    cluster.create_model("add")
    cluster.wait_model("add", "Available", readyPods="2/2")
    cluster.api.patch("inferenceservers", cluster.namespace, "default",
                      {"spec": {"storage": {"persistentVolumeClaim": {"claimName": "x"}}}})

    def invalid() -> dict[str, Any] | None:
        st = cluster.model("add").get("status") or {}
        return st if "spec is invalid" in str(st.get("message")) else None

    st = cluster.wait_for("the model to say its server is invalid", invalid)
    assert st["message"].startswith("InferenceServer 'default' spec is invalid: spec.storage")
    assert "its pods still serve version 2 on 2 pod(s)" in st["message"]
    assert (st["state"], st["readyPods"], st["availableVersions"]) == ("Available", "2/2", "2")
    assert conds(st)["Stalled"] == ("True", "ServerSpecInvalid")
    assert kstatus(cluster.model("add")) == "Failed"
    server = cluster.api.get("inferenceservers", cluster.namespace, "default") or {}
    cluster.wait_for("the server Stalled", lambda: kstatus(
        cluster.api.get("inferenceservers", cluster.namespace, "default") or {}) == "Failed")

    cluster.api.patch("inferenceservers", cluster.namespace, "default",
                      {"spec": {"storage": {"persistentVolumeClaim": None}}})
    cluster.wait_for("the model Current again", lambda: kstatus(cluster.model("add")) == "Current"
                     and (cluster.model("add")["status"]["readyPods"] == "2/2"))
    assert server["status"]["message"].startswith("invalid spec: spec.storage")


def test_name_clashes_keep_the_serving_model_then_the_older_then_name_order(
        cluster: Cluster) -> None:
    def create(name: str, model_name: str, created: str) -> None:
        cluster.api.create("inferencemodels", cluster.namespace, {
            "apiVersion": "ovserve.io/v1alpha1", "kind": "InferenceModel",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"modelName": model_name, "basePath": "add"}})

    first, second = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    # All new at once (no server yet): the older wins, a tie goes to the first name.
    create("new-a", "other", second)
    create("old-b", "other", first)
    create("tie-b", "third", first)
    create("tie-a", "third", first)
    create("zeta", "same", first)
    cluster.create_server(replicas=1)
    cluster.start_kubelet()
    for winner in ("old-b", "tie-a", "zeta"):
        cluster.wait_model(winner, "Available", readyPods="1/1")
    for loser, holder in (("new-a", "old-b"), ("tie-b", "tie-a")):
        st = cluster.wait_model(loser, "Failed")
        assert f"is already served by InferenceModel {holder!r}" in st["message"]
        assert conds(st)["Stalled"] == ("True", "NameConflict")
    # A newcomer created in the same second, with a name that sorts first, does not take the
    # name from the model already serving it.
    create("alpha", "same", first)
    st = cluster.wait_model("alpha", "Failed")
    assert "is already served by InferenceModel 'zeta'" in st["message"]
    assert kstatus(cluster.model("alpha")) == "Failed"
    time.sleep(1.0)
    assert cluster.model("zeta")["status"]["state"] == "Available"


def test_server_with_missing_pods_says_what_is_missing(cluster: Cluster) -> None:
    cluster.create_server(replicas=2)

    def reason() -> tuple[str, str] | None:
        st = (cluster.api.get("inferenceservers", cluster.namespace, "default") or {}).get(
            "status") or {}
        ready = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
        return (ready["reason"], ready["message"]) if ready else None

    assert cluster.wait_for("a Ready condition", reason) == (
        "PodsMissing", "0 of 2 pod(s) exist, 0 ready")
    server = cluster.api.get("inferenceservers", cluster.namespace, "default") or {}
    assert conds(server["status"])["Reconciling"] == ("True", "PodsMissing")
    assert kstatus(server) == "InProgress"
    cluster.start_kubelet()
    cluster.wait_for("the server Ready", lambda: (reason() or ("",))[0] == "Ready")


def test_unreachable_pod_is_named_with_its_url_in_status(cluster: Cluster) -> None:
    cluster.create_server(replicas=1)
    deployment = cluster.wait_for("the Deployment", lambda: cluster.api.get(
        "deployments", cluster.namespace, "default"))
    template = deployment["spec"]["template"]
    port = template["spec"]["containers"][0]["ports"][0]["containerPort"]
    cluster.api.create("pods", cluster.namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "default-x", "labels": template["metadata"]["labels"]},
        "spec": template["spec"]})
    cluster.api.patch("pods", cluster.namespace, "default-x", {"status": {
        "phase": "Running", "podIP": "127.0.0.9",
        "conditions": [{"type": "Ready", "status": "True"}]}}, sub="status")
    cluster.create_model("add")
    url = f"http://127.0.0.9:{port}"

    def blocked() -> dict[str, Any] | None:
        st = cluster.model("add").get("status") or {}
        return st if "unreachable" in str(st.get("message")) else None

    st = cluster.wait_for("the model to name the unreachable pod", blocked)
    assert (f"pod default-x ({url}) unreachable: cannot connect to {url}: Connection refused"
            in st["message"])
    assert conds(st)["ConfigApplied"] == ("False", "Unreachable")
    server = cluster.wait_for("the server to name it", lambda: (cluster.api.get(
        "inferenceservers", cluster.namespace, "default") or {}).get("status", {}).get(
        "message", "").count(url) and cluster.api.get("inferenceservers", cluster.namespace,
                                                      "default"))
    assert conds(server["status"])["Ready"] == ("False", "Unreachable")


def test_operator_metrics_and_json_logs(cluster: Cluster, operator_metrics: str) -> None:
    cluster.create_server(replicas=1)
    cluster.start_kubelet()
    cluster.create_model("add")
    cluster.wait_model("add", "Available", readyPods="1/1")
    text = requests.get(operator_metrics, timeout=10).text
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("ovserve_operator_")}
    assert values['ovserve_operator_reconciles_total{result="converged"}'] >= 1
    assert values["ovserve_operator_reconcile_duration_seconds_count"] >= 1
    assert "ovserve_operator_handshake_timeouts_total" in values
    assert "ovserve_operator_pods_unreachable_total" in values
    lines = [line for line in cluster.operator_log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"message", "severity"} <= set(r) for r in records), records[:3]
    assert any(cluster.namespace in r["message"] for r in records)


def test_after_an_operator_restart_a_stale_pod_gets_one_reload_per_pass(
        tmp_path: Path, models: Path) -> None:
    # Its own API server and operator, so the operator can be restarted mid-change.
    with running_apiserver(tmp_path / "apiserver") as url:
        api = Api(url)
        with running_operator(url, tmp_path / "operator") as log_path:
            cluster = Cluster(api, "restart", models, tmp_path, log_path)
            cluster.create_server(replicas=2)
            kubelet = cluster.start_kubelet(late={"default-1": 10_000})  # never catches up
            try:
                cluster.create_model("add")
                cluster.create_model("keep", basePath="add")
                cluster.wait_model("add", "Available", readyPods="2/2")
                cluster.wait_model("keep", "Available", readyPods="2/2")
                cluster.create_model("more", basePath="add")  # default-1 never gets this one
                cluster.wait_model("more", "Loading")
            except BaseException:
                kubelet.stop()
                raise
        try:
            # Restarted: kopf resumes the server and all three models at once.
            with running_operator(url, tmp_path / "operator"):
                before = kubelet.reloads("default-1")
                time.sleep(6.0)
                reloads = kubelet.reloads("default-1") - before
                st = cluster.model("add")["status"]
        finally:
            kubelet.stop()
    # One pass at a time with back-off 0.3, 0.6, 1, 1 … s makes at most ~8 passes in 6 s, each
    # with one reload call; three handlers racing made three times as many.
    print(f"\nreload calls to the stale pod in 6 s after a restart: {reloads}")
    assert 3 <= reloads <= 10
    # ... and the unchanged models stayed Available on both pods throughout.
    assert (st["state"], st["readyPods"]) == ("Available", "2/2")
