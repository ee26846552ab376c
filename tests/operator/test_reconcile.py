"""A full reconciliation pass against a fake API and scripted pods (no kopf, no HTTP)."""

from __future__ import annotations

from typing import Any

import pytest
from operator_fakes import FakeKube, FakePods, model_body, ovms_body, pod_body, server_body

from ovserve.operator.reconcile import (
    ENTRIES_ANNOTATION,
    ENTRIES_MAX_BYTES,
    ENTRY_HISTORY,
    NUDGE_AT,
    NUDGE_COUNT,
    NUDGE_HASH,
    Reconciler,
    Settings,
    dump_entries,
    holder_of,
    load_entries,
    pod_target,
    resolve_names,
    rfc3339,
)
from ovserve.operator.reload import Converged, GaveUp, Retry
from ovserve.operator.resources import ModelSpec, ServerSpec

A, B = "http://10.0.0.1:8081", "http://10.0.0.2:8081"
SETTINGS = Settings(reload_timeout=60, retry_delay=1, max_retry_delay=8)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def reconciler(kube: FakeKube, pods: FakePods, clock: Clock) -> Reconciler:
    # A pod serves "add" once it applied the config the operator rendered last.
    def body_for(url: str, applied: str) -> dict[str, Any]:
        if kube.children and applied == kube.config_hash():
            return dict(ovms_body({"add": [(1, "AVAILABLE", "OK", "OK")]}))
        return {}

    pods.body_for = body_for
    return Reconciler(kube, pods, SETTINGS, clock=clock)


def model_status(kube: FakeKube, name: str = "add") -> dict[str, Any]:
    return dict(kube.models[("ml", name)].get("status") or {})


def deliver(kube: FakeKube, pods: FakePods, *urls: str) -> None:
    """Play the kubelet: the pods' mounted config now holds the ConfigMap's bytes."""
    for url in urls:
        pods.on_disk[url] = kube.config_hash()


def two_ready_pods(kube: FakeKube) -> None:
    kube.add(pod_body("default-a", "10.0.0.1"))
    kube.add(pod_body("default-b", "10.0.0.2"))


def test_model_without_server_waits_in_pending(kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(model_body("add"))
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.step is None and outcome.states == {"add": "Pending"}
    assert model_status(kube)["message"] == (
        "InferenceServer 'default' not found in namespace 'ml'; the model waits for it")
    assert kube.children == {}


def test_first_pass_creates_children_and_waits_for_pods(kube: FakeKube,
                                                         reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    outcome = reconciler.reconcile_server("ml", "default")
    assert sorted(kube.applied) == [("ConfigMap", "default-config"), ("Deployment", "default"),
                                    ("PodDisruptionBudget", "default"), ("Service", "default")]
    # No timer: the pods' own events start the next pass.
    assert outcome.step is None
    assert model_status(kube)["state"] == "Pending"
    server_status = kube.servers[("ml", "default")]["status"]
    ready = next(c for c in server_status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False", "PodsMissing", "0 of 2 pod(s) exist, 0 ready")
    assert server_status["desiredConfigHash"] == "" and server_status["readyReplicas"] == 0
    assert server_status["selector"] == ("app.kubernetes.io/instance=default,"
                                         "app.kubernetes.io/name=ovserve-server")


def test_no_retry_for_a_server_scaled_to_zero(kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=0))
    assert reconciler.reconcile_server("ml", "default").step is None


def test_ready_pods_reload_and_the_model_becomes_available(
        kube: FakeKube, pods: FakePods, reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A, B)
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.step == Converged()
    st = model_status(kube)
    assert (st["state"], st["readyPods"], st["availableVersions"]) == ("Available", "2/2", "1")
    assert kube.servers[("ml", "default")]["status"]["configHash"] == kube.config_hash()
    assert ("POST", A) in pods.calls and ("POST", B) in pods.calls


def test_stale_pod_is_nudged_retried_and_converges(
        kube: FakeKube, pods: FakePods, reconciler: Reconciler, clock: Clock) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A)  # the kubelet is late for pod b
    kube.nudges.clear()
    outcome = reconciler.reconcile_server("ml", "default")
    assert isinstance(outcome.step, Retry)
    assert outcome.step.reason.startswith("waiting for pod(s) default-b to see config")
    annotations = kube.pods[("ml", "default-b")]["metadata"]["annotations"]
    assert annotations[NUDGE_HASH] == kube.config_hash()
    first_nudge = annotations[NUDGE_AT]
    assert model_status(kube)["state"] == "Loading"
    assert [name for name, _ in kube.nudges] == ["default-b"]

    clock.now += 5
    again = reconciler.reconcile_server("ml", "default")
    assert isinstance(again, type(outcome)) and isinstance(again.step, Retry)
    annotations = kube.pods[("ml", "default-b")]["metadata"]["annotations"]
    assert annotations[NUDGE_AT] == first_nudge  # the first nudge time is kept...
    assert kube.nudges[-1][1][NUDGE_COUNT] != kube.nudges[-2][1][NUDGE_COUNT]  # ...re-touched

    deliver(kube, pods, B)
    assert reconciler.reconcile_server("ml", "default").step == Converged()
    assert model_status(kube)["state"] == "Available"


def test_a_pod_that_never_sees_the_config_is_given_up_on_and_reported(
        kube: FakeKube, pods: FakePods, reconciler: Reconciler, clock: Clock) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A)
    reconciler.reconcile_server("ml", "default")
    clock.now += SETTINGS.reload_timeout + 1
    outcome = reconciler.reconcile_server("ml", "default")
    assert isinstance(outcome.step, GaveUp)
    st = model_status(kube)
    assert st["state"] == "Available" and st["readyPods"] == "1/2"
    assert "gave up after 60 s: pod(s) default-b still report config" in st["message"]
    applied = next(c for c in st["conditions"] if c["type"] == "ConfigApplied")
    assert (applied["status"], applied["reason"]) == ("False", "TimedOut")
    server_cond = kube.servers[("ml", "default")]["status"]["conditions"]
    assert any(c["reason"] == "TimedOut" for c in server_cond)


def test_unchanged_status_is_not_rewritten(kube: FakeKube, pods: FakePods,
                                           reconciler: Reconciler, clock: Clock) -> None:
    kube.add(server_body(replicas=1))
    kube.add(model_body("add"))
    kube.add(pod_body("default-a", "10.0.0.1"))
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A)
    reconciler.reconcile_server("ml", "default")
    writes = len(kube.statuses)
    applied = len(kube.applied)
    clock.now += 30
    reconciler.reconcile_server("ml", "default")
    assert len(kube.statuses) == writes and len(kube.applied) == applied


def test_not_ready_and_foreign_pods_are_not_called(kube: FakeKube, pods: FakePods,
                                                   reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(pod_body("default-a", "10.0.0.1", ready=False))
    kube.add(pod_body("other-a", "10.0.0.9", server="other"))
    terminating = kube.add(pod_body("default-b", "10.0.0.2"))
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    reconciler.reconcile_server("ml", "default")
    assert pods.calls == []
    assert kube.servers[("ml", "default")]["status"]["replicas"] == 1


def test_clashing_model_name_fails_the_newer_model(kube: FakeKube,
                                                   reconciler: Reconciler) -> None:
    kube.add(server_body())
    kube.add(model_body("first", modelName="add", created="2026-01-01T00:00:00Z"))
    kube.add(model_body("second", modelName="add", created="2026-01-02T00:00:00Z"))
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.states["second"] == "Failed"
    assert "already served by InferenceModel 'first'" in model_status(kube, "second")["message"]


def test_deleted_model_leaves_the_config(kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(server_body())
    kube.add(model_body("add"))
    gone = kube.add(model_body("old"))
    reconciler.reconcile_server("ml", "default")
    assert '"name": "old"' in kube.children[("ConfigMap", "ml", "default-config")]["data"][
        "config.json"]
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    outcome = reconciler.reconcile_server("ml", "default")
    assert '"name": "old"' not in kube.children[("ConfigMap", "ml", "default-config")]["data"][
        "config.json"]
    assert "old" not in outcome.states


def test_invalid_server_leaves_models_pending(kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(server_body(storage={"persistentVolumeClaim": {"claimName": "a"},
                                  "hostPath": {"path": "/m"}}))
    kube.add(model_body("add"))
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.server_error and "exactly one of" in outcome.server_error
    assert model_status(kube)["message"].startswith("InferenceServer 'default' spec is invalid:")
    assert model_status(kube)["state"] == "Pending"  # no pod serves it
    assert kube.children == {}
    writes = len(kube.statuses)
    reconciler.reconcile_server("ml", "default")  # e.g. the refresh timer: nothing new
    assert len(kube.statuses) == writes


def test_server_and_models_are_read_under_the_servers_lock(
        kube: FakeKube, reconciler: Reconciler, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pass that read an older model list must not apply it after a newer pass.
    kube.add(server_body())
    kube.add(model_body("add"))
    held: list[tuple[str, bool]] = []
    lock = reconciler._lock("ml", "default")
    for method in ("get_server", "list_models"):
        real = getattr(kube, method)

        def spy(*args: Any, _real: Any = real, _name: str = method) -> Any:
            held.append((_name, lock.locked()))
            return _real(*args)

        monkeypatch.setattr(kube, method, spy)
    reconciler.reconcile_server("ml", "default")
    assert held == [("get_server", True), ("list_models", True)]


def test_invalid_model_status(kube: FakeKube, reconciler: Reconciler) -> None:
    body = kube.add(model_body("add", shape="(1,0)"))
    reconciler.model_invalid(body, "spec.shape: dimension 0 must be positive or -1")
    st = model_status(kube)
    assert (st["state"], st["message"]) == ("Failed",
                                            "spec.shape: dimension 0 must be positive or -1")


def test_pod_target_uses_the_pods_own_port_and_scheme() -> None:
    server = ServerSpec.from_body(server_body(restPort=9000, tls={"secretName": "t"}))
    pod = pod_body("p", "fd00::5", port=9443, annotations={NUDGE_HASH: "h", NUDGE_AT: "12.5"})
    pod["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"scheme": "HTTPS"}}
    target = pod_target(pod, server)
    assert target.url == "https://[fd00::5]:9443"
    assert (target.nudged_hash, target.nudged_at) == ("h", 12.5)
    bare = pod_body("q", "10.1.1.1")
    bare["spec"] = {}
    assert pod_target(bare, server).url == "https://10.1.1.1:9000"


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"


def test_no_ready_pod_means_nothing_to_retry(kube: FakeKube, reconciler: Reconciler) -> None:
    # A model's deletion does not wait for pods to start (nothing to unload).
    kube.add(server_body(replicas=2))
    assert reconciler.reconcile_server("ml", "default").step is None


# ---------------------------------------------------------------- name clashes


def spec(name: str, model_name: str, created: str) -> ModelSpec:
    return ModelSpec.from_body(model_body(name, modelName=model_name, created=created))


def test_resolve_names_holder_then_older_then_name() -> None:
    day1, day2 = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
    models = [spec("b", "same", day1), spec("a", "same", day1), spec("new", "other", day1),
              spec("old", "other", day1), spec("x", "third", day2), spec("y", "third", day1)]
    kept, rejected = resolve_names(models, {"other": "new"})
    assert sorted(m.name for m in kept) == ["a", "new", "y"]
    assert rejected["b"] == ("model name 'same' is already served by InferenceModel 'a' on "
                             "server 'default'; choose another spec.modelName")
    assert "InferenceModel 'new'" in rejected["old"]  # the holder keeps it, though not older
    assert "InferenceModel 'y'" in rejected["x"]  # the older wins


def test_the_serving_model_keeps_its_name_across_operator_restarts(
        kube: FakeKube, pods: FakePods, clock: Clock) -> None:
    kube.add(server_body())
    kube.add(model_body("zeta", modelName="add", created="2026-01-01T00:00:00Z"))
    Reconciler(kube, pods, SETTINGS, clock=clock).reconcile_server("ml", "default")
    assert holder_of(kube.models[("ml", "zeta")]) == "add"
    # Created in the same second, and its name sorts first: it still does not take the name.
    kube.add(model_body("alpha", modelName="add", created="2026-01-01T00:00:00Z"))
    for _restart in range(2):
        outcome = Reconciler(kube, pods, SETTINGS, clock=clock).reconcile_server("ml",
                                                                                 "default")
        assert outcome.states["alpha"] == "Failed"
        assert "InferenceModel 'zeta'" in model_status(kube, "alpha")["message"]
        assert holder_of(kube.models[("ml", "alpha")]) is None


# ---------------------------------------------------------------- READY during changes


def test_pods_on_the_previous_config_count_for_models_whose_entry_is_unchanged(
        kube: FakeKube, pods: FakePods, reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A, B)
    reconciler.reconcile_server("ml", "default")
    assert model_status(kube)["readyPods"] == "2/2"
    first = kube.config_hash()
    # Another model joins; the kubelet has not delivered the new config yet.
    pods.body_for = lambda url, applied: dict(ovms_body({"add": [(1, "AVAILABLE", "OK", "OK")]}))
    kube.add(model_body("other"))
    outcome = reconciler.reconcile_server("ml", "default")
    assert isinstance(outcome.step, Retry) and kube.config_hash() != first
    st = model_status(kube)
    assert (st["state"], st["readyPods"]) == ("Available", "2/2")
    assert model_status(kube, "other")["state"] == "Pending"
    # This model's own entry changes: now it waits for the pods.
    kube.models[("ml", "add")]["spec"]["versionPolicy"] = {"all": {}}
    reconciler.reconcile_server("ml", "default")
    st = model_status(kube)
    assert (st["state"], st["readyPods"]) == ("Loading", "0/2")


def test_missing_pods_are_given_up_on_after_the_reload_timeout(
        kube: FakeKube, reconciler: Reconciler, clock: Clock) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    assert reconciler.reconcile_server("ml", "default").step is None
    clock.now += SETTINGS.reload_timeout + 1
    outcome = reconciler.reconcile_server("ml", "default")
    assert isinstance(outcome.step, GaveUp)
    st = kube.servers[("ml", "default")]["status"]
    stalled = next(c for c in st["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "TimedOut")
    assert "gave up after 60 s: 0 of 2 pod(s) exist, 0 ready" in stalled["message"]
    assert st["observedGeneration"] == 1
    assert model_status(kube)["state"] == "Pending"


def test_invalid_server_with_serving_pods_shows_what_they_serve(
        kube: FakeKube, pods: FakePods, reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    reconciler.reconcile_server("ml", "default")
    deliver(kube, pods, A, B)
    reconciler.reconcile_server("ml", "default")
    kube.servers[("ml", "default")]["spec"]["replicas"] = -1
    pods.calls.clear()
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.server_error
    st = model_status(kube)
    assert (st["state"], st["readyPods"], st["availableVersions"]) == ("Available", "2/2", "1")
    assert st["message"].startswith("InferenceServer 'default' spec is invalid: spec.replicas")
    assert st["configHash"] == kube.config_hash()  # still holds its name
    assert {method for method, _ in pods.calls} == {"GET"}  # read-only: no reload
    server = kube.servers[("ml", "default")]["status"]
    assert server["message"].startswith("invalid spec: spec.replicas")


def test_unreachable_pod_is_not_nudged(kube: FakeKube, pods: FakePods,
                                       reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    pods.down.add(B)
    reconciler.reconcile_server("ml", "default")
    assert [name for name, _ in kube.nudges] == ["default-a"]
    assert ("POST", B) not in pods.calls
    assert "pod default-b (http://10.0.0.2:8081) unreachable" in model_status(kube)["message"]


def test_a_restarted_operator_reads_the_rendered_entries_back_from_the_config_map(
        kube: FakeKube, pods: FakePods, clock: Clock) -> None:
    first = Reconciler(kube, pods, SETTINGS, clock=clock)
    kube.add(server_body(replicas=2))
    kube.add(model_body("add"))
    two_ready_pods(kube)
    first.reconcile_server("ml", "default")
    deliver(kube, pods, A, B)
    first.reconcile_server("ml", "default")
    pods.body_for = lambda url, applied: dict(ovms_body({"add": [(1, "AVAILABLE", "OK", "OK")]}))
    kube.add(model_body("other"))
    first.reconcile_server("ml", "default")  # the pods never get this config
    restarted = Reconciler(kube, pods, SETTINGS, clock=clock)
    restarted.reconcile_server("ml", "default")
    st = model_status(kube)
    assert (st["state"], st["readyPods"]) == ("Available", "2/2")
    cm = kube.children[("ConfigMap", "ml", "default-config")]
    assert len(load_entries(cm)) == 2


def test_the_entries_annotation_is_bounded() -> None:
    history = {f"{i:064d}": {f"model-{j}": "0" * 16 for j in range(200)} for i in range(16)}
    text = dump_entries(history)
    assert len(text) <= ENTRIES_MAX_BYTES
    kept = load_entries({"metadata": {"annotations": {ENTRIES_ANNOTATION: text}}})
    assert 1 <= len(kept) < 16 and list(kept)[-1] == f"{15:064d}"  # the newest stays
    assert load_entries({"metadata": {"annotations": {ENTRIES_ANNOTATION: "not json"}}}) == {}


def test_the_in_memory_entry_history_is_bounded(kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(server_body())
    body = kube.add(model_body("add"))
    for number in range(ENTRY_HISTORY + 4):
        body["spec"]["nireq"] = number + 1  # a new config each pass
        reconciler.reconcile_server("ml", "default")
    assert len(reconciler._entries[("ml", "default")]) == ENTRY_HISTORY
    assert len(load_entries(kube.children[("ConfigMap", "ml", "default-config")])) == ENTRY_HISTORY


def test_pdb_follows_replicas_and_is_deleted_when_no_longer_wanted(
        kube: FakeKube, reconciler: Reconciler) -> None:
    kube.add(server_body(replicas=3))
    reconciler.reconcile_server("ml", "default")
    assert ("PodDisruptionBudget", "ml", "default") in kube.children
    kube.add(server_body(replicas=1))
    reconciler.reconcile_server("ml", "default")
    assert ("PodDisruptionBudget", "ml", "default") not in kube.children
    assert ("-PodDisruptionBudget", "default") in kube.applied


def test_server_without_image_runs_the_operators_server_image(kube: FakeKube) -> None:
    reconciler = Reconciler(kube, FakePods(), Settings(server_image="example.org/srv:2"))
    kube.add(server_body(image=""))
    reconciler.reconcile_server("ml", "default")
    deployment = kube.children[("Deployment", "ml", "default")]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "example.org/srv:2"
    assert kube.servers[("ml", "default")]["status"]["image"] == "example.org/srv:2"
