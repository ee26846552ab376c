"""The kopf wiring: which handlers a fresh registry carries (no API server involved)."""

from __future__ import annotations

from typing import Any

from ovserve.operator.handlers import RunOptions, build_registry, pod_fingerprint
from ovserve.operator.reconcile import Settings


def test_registry_has_every_handler_and_no_global_state() -> None:
    options = RunOptions(namespaces=("ml",), settings=Settings(status_interval=7))
    first, second = build_registry(options), build_registry(options)
    assert first is not second
    changing = first._changing.get_all_handlers()
    # A resume handler has no reason; kopf marks it "initial" (run for objects that exist).
    kinds = {(h.id, h.reason.value if h.reason else "resume" if h.initial else "?")
             for h in changing}
    for handler_id in ("model", "server"):
        assert {(handler_id, r) for r in ("create", "update", "resume")} <= kinds
    deletes = {h.id: h for h in changing if h.id.endswith("-deleted")}
    assert deletes["model-deleted"].requires_finalizer is True
    assert deletes["server-deleted"].requires_finalizer is False
    (timer,) = first._spawning.get_all_handlers()
    assert (timer.id, timer.interval) == ("refresh", 7)
    # kopf always puts a finalizer on objects with a timer: InferenceServers carry one too
    # (docs/operator.md, the chart's pre-delete hook).
    assert timer.requires_finalizer is True
    (pods,) = first._watching.get_all_handlers()
    assert pods.id == "pods" and dict(pods.labels or {}) == {
        "app.kubernetes.io/name": "ovserve-server"}
    activities = {h.id for h in first._activities.get_all_handlers()}
    assert {"login", "startup", "cleanup", "reconciler"} <= activities


def test_pod_fingerprint_ignores_annotations_but_not_readiness() -> None:
    pod: dict[str, Any] = {"metadata": {"annotations": {"ovserve.io/config-nudge": "1"}},
           "status": {"phase": "Running", "podIP": "10.0.0.1",
                      "conditions": [{"type": "Ready", "status": "False"}]}}
    before = pod_fingerprint(pod)
    pod["metadata"]["annotations"]["ovserve.io/config-nudge"] = "2"
    assert pod_fingerprint(pod) == before
    pod["status"]["conditions"][0]["status"] = "True"
    assert pod_fingerprint(pod) != before
    assert pod_fingerprint(pod) == (True, "10.0.0.1", "Running", False)


def test_startup_filters_pods_on_the_api_server_and_builds_the_scheduler() -> None:
    import kopf
    from operator_fakes import FakeKube, FakePods

    from ovserve.operator.reconcile import Reconciler
    from ovserve.operator.scheduler import Scheduler

    registry = build_registry(RunOptions(namespaces=("ml",)),
                              lambda: Reconciler(FakeKube(), FakePods()))
    (startup,) = [h for h in registry._activities.get_all_handlers() if h.id == "startup"]
    settings, memo = kopf.OperatorSettings(), kopf.Memo()
    startup.fn(settings=settings, memo=memo)
    assert settings.watching.label_selectors["v1", "pods"] == (
        "app.kubernetes.io/name=ovserve-server")
    assert isinstance(memo["scheduler"], Scheduler)
    memo["scheduler"].close()


async def test_pod_events_kick_only_on_changes_that_matter_and_forget_deleted_pods() -> None:
    from ovserve.operator.scheduler import Key, Scheduler

    class Kicks(Scheduler):
        def __init__(self) -> None:
            super().__init__(lambda ns, name: None)  # type: ignore[arg-type,return-value]
            self.kicked: list[Key] = []

        def kick(self, key: Key, why: str = "") -> None:
            self.kicked.append(key)

    registry = build_registry(RunOptions(namespaces=("ml",)))
    (handler,) = registry._watching.get_all_handlers()
    scheduler = Kicks()
    memo = {"scheduler": scheduler}
    pod: dict[str, Any] = {
        "metadata": {"namespace": "ml", "name": "p", "annotations": {},
                     "labels": {"app.kubernetes.io/name": "ovserve-server",
                                "app.kubernetes.io/instance": "gpu"}},
        "status": {"phase": "Running", "podIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]}}
    await handler.fn(event={"type": None}, body=pod, memo=memo)
    pod["metadata"]["annotations"]["ovserve.io/config-nudge"] = "1"  # our own nudge
    await handler.fn(event={"type": "MODIFIED"}, body=pod, memo=memo)
    assert scheduler.kicked == [("ml", "gpu")]
    await handler.fn(event={"type": "DELETED"}, body=pod, memo=memo)
    await handler.fn(event={"type": "ADDED"}, body=pod, memo=memo)  # same name, a new pod
    assert scheduler.kicked == [("ml", "gpu")] * 3
    scheduler.close()
