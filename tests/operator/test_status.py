"""Folding per-pod model statuses into InferenceModel / InferenceServer status."""

from __future__ import annotations

from typing import Any

import pytest
from kstatus import kstatus
from operator_fakes import model_body, server_body

from ovserve.operator import status
from ovserve.operator.reload import HandshakeResult, PodReport, VersionReport
from ovserve.operator.resources import ModelSpec, ServerSpec

NEW, OLD = "a" * 64, "b" * 64
NOW, LATER = "2026-05-01T10:00:00Z", "2026-05-01T10:05:00Z"
SERVER = ServerSpec.from_body(server_body(replicas=3))
MODEL = ModelSpec.from_body(model_body("add"))
OK = ("OK", "OK")


def v(number: int, state: str, code: str = "OK", message: str = "OK") -> VersionReport:
    return VersionReport(number, state, code, message)


def pod(name: str, *versions: VersionReport, applied: bool = True, model: str = "add"
        ) -> PodReport:
    return PodReport(name, NEW if applied else OLD, applied, {model: tuple(versions)})


def fold(*pods: PodReport, ready: int | None = None, gave_up: str | None = None,
         previous: dict[str, Any] | None = None, now: str = NOW) -> dict[str, Any]:
    pool = status.Pool(replicas=3, existing=3, ready=len(pods) if ready is None else ready)
    return status.model_status(MODEL, SERVER, HandshakeResult(NEW, tuple(pods)), pool, now,
                               previous, gave_up)


def conditions(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in out["conditions"]}


def test_available_on_all_pods() -> None:
    out = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "AVAILABLE")),
               pod("p3", v(1, "AVAILABLE")))
    assert out["state"] == "Available"
    assert out["readyPods"] == "3/3"
    assert out["availableVersions"] == "1"
    assert out["versions"] == [{"version": 1, "state": "AVAILABLE", "availablePods": 3}]
    assert out["configHash"] == NEW and out["observedGeneration"] == 1
    assert conditions(out) == {"Ready": ("True", "Available"),
                               "Reconciling": ("False", "Available"),
                               "Stalled": ("False", "Available"),
                               "ConfigApplied": ("True", "Applied")}


def test_loading_on_one_pod_folds_to_loading_with_counts() -> None:
    out = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "AVAILABLE")),
               pod("p3", v(1, "LOADING")))
    assert out["state"] == "Loading"
    assert out["readyPods"] == "2/3"
    assert out["availableVersions"] == ""
    assert out["versions"] == [{"version": 1, "state": "LOADING", "availablePods": 2}]
    assert out["message"] == "version 1 is LOADING on pod p3"
    assert conditions(out)["Ready"] == ("False", "Loading")


def test_failed_load_shows_the_servers_error_text() -> None:
    error = "Cannot create model: [ GENERAL_ERROR ] Unable to read the model: /models/add/1"
    out = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "LOADING", "UNKNOWN", error)))
    assert out["state"] == "Failed"
    assert out["message"] == f"version 1 failed to load on pod p2: {error}"
    assert out["versions"] == [{"version": 1, "state": "FAILED", "availablePods": 1,
                                "errorMessage": error}]
    assert conditions(out)["Ready"] == ("False", "Failed")


def test_failure_on_several_pods_is_counted() -> None:
    broken = v(1, "LOADING", "UNKNOWN", "x")
    out = fold(pod("p1", broken), pod("p2", broken), pod("p3", broken))
    assert out["message"].endswith("(and on 2 more pods)")


def test_versions_fold_independently() -> None:
    out = fold(pod("p1", v(1, "END"), v(2, "AVAILABLE")), pod("p2", v(1, "END"), v(2, "AVAILABLE")))
    assert out["state"] == "Available"
    assert out["availableVersions"] == "2"
    assert [x["state"] for x in out["versions"]] == ["END", "AVAILABLE"]


def test_stale_pod_keeps_the_model_loading_until_gave_up() -> None:
    waiting = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "AVAILABLE"), applied=False))
    assert waiting["state"] == "Loading"
    assert "waiting for p2 to load the new config" in waiting["message"]
    assert conditions(waiting)["ConfigApplied"] == ("False", "Waiting")
    gave_up = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "AVAILABLE"), applied=False),
                   gave_up="gave up after 180 s: pod(s) p2 still report config bbbb")
    assert gave_up["state"] == "Available"
    assert gave_up["readyPods"] == "1/3"
    assert "gave up after 180 s" in gave_up["message"]
    assert conditions(gave_up)["ConfigApplied"] == ("False", "TimedOut")


def test_new_model_not_on_any_pod_yet_is_pending() -> None:
    out = fold(PodReport("p1", OLD, False, {}))
    assert out["state"] == "Pending"
    assert out["message"] == f"waiting for 1 pod(s) to load config {NEW[:12]}"


def test_edited_model_served_by_old_config_is_loading() -> None:
    out = fold(pod("p1", v(1, "AVAILABLE"), applied=False))
    assert out["state"] == "Loading"


def test_no_ready_pods_is_pending() -> None:
    out = fold(ready=0)
    assert out["state"] == "Pending"
    assert out["message"] == "no ready pod of InferenceServer 'default' yet (3 of 3 pods exist)"
    assert conditions(out)["ConfigApplied"] == ("False", "NoReadyPods")


def test_model_without_version_folders_fails_with_a_hint() -> None:
    out = fold(pod("p1"))
    assert out["state"] == "Failed"
    assert "pod p1 serves no version of model 'add'" in out["message"]
    assert "/models/add/1/model.xml" in out["message"]


def test_transition_time_moves_only_when_the_condition_flips() -> None:
    first = fold(pod("p1", v(1, "LOADING")))
    same = fold(pod("p1", v(1, "LOADING")), previous=first, now=LATER)
    flipped = fold(pod("p1", v(1, "AVAILABLE")), previous=same, now=LATER)
    times = {c["type"]: c["lastTransitionTime"] for c in same["conditions"]}
    assert times == {"Ready": NOW, "Reconciling": NOW, "Stalled": NOW, "ConfigApplied": NOW}
    flipped_times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert flipped_times == {"Ready": LATER, "Reconciling": LATER, "Stalled": NOW,
                             "ConfigApplied": NOW}


def test_pending_and_invalid_statuses() -> None:
    pending = status.pending_status(MODEL, "ServerNotFound", "InferenceServer 'x' not found",
                                    NOW)
    assert (pending["state"], pending["message"]) == ("Pending", "InferenceServer 'x' not found")
    assert conditions(pending)["Ready"] == ("False", "ServerNotFound")
    invalid = status.invalid_status("add", 4, "spec.shape: bad", NOW)
    assert (invalid["state"], invalid["observedGeneration"]) == ("Failed", 4)
    assert conditions(invalid)["ConfigApplied"] == ("False", "InvalidSpec")


@pytest.mark.parametrize(("pods", "ready", "expected"), [
    ((True, True, True), 3, ("True", "Applied", NEW, "3/3")),
    ((True, False), 2, ("False", "Waiting", "", "1/2")),
    ((), 0, ("False", "NoReadyPods", "", "0/0")),
])
def test_server_status(pods: tuple[bool, ...], ready: int,
                       expected: tuple[str, str, str, str]) -> None:
    reports = tuple(PodReport(f"p{i}", NEW if a else OLD, a) for i, a in enumerate(pods))
    result = HandshakeResult(NEW, reports) if reports else None
    out = status.server_status(SERVER, "sel", status.Pool(3, len(pods), ready), 2, result, NOW)
    applied = next(c for c in out["conditions"] if c["type"] == "ConfigApplied")
    assert (applied["status"], applied["reason"], out["configHash"], out["appliedPods"]) == expected
    assert (out["replicas"], out["readyReplicas"], out["models"]) == (len(pods), ready, 2)
    assert out["selector"] == "sel"
    ready_cond = next(c for c in out["conditions"] if c["type"] == "Ready")
    assert ready_cond["status"] == ("True" if expected[1] == "Applied" else "False")


# ---------------------------------------------------------------- READY during changes


def test_unchanged_model_on_pods_still_loading_a_new_config_stays_available() -> None:
    # Both pods still serve the old config, which carries this model's entry unchanged.
    stale = (pod("p1", v(1, "AVAILABLE"), applied=False),
             pod("p2", v(1, "AVAILABLE"), applied=False),
             pod("p3", v(1, "AVAILABLE"), applied=False))
    result = HandshakeResult(NEW, stale)
    pool = status.Pool(replicas=3, existing=3, ready=3)
    out = status.model_status(MODEL, SERVER, result, pool, NOW, None, None,
                              unchanged=frozenset({"p1", "p2", "p3"}))
    assert (out["state"], out["readyPods"], out["availableVersions"]) == ("Available", "3/3",
                                                                        "1")
    assert conditions(out)["Ready"] == ("True", "Available")
    assert conditions(out)["ConfigApplied"] == ("True", "Applied")
    # The same pods, but this model's own entry changed: Loading until they load it.
    changed = status.model_status(MODEL, SERVER, result, pool, NOW)
    assert (changed["state"], changed["readyPods"]) == ("Loading", "0/3")
    assert conditions(changed)["Reconciling"] == ("True", "Loading")


def test_a_give_up_about_other_pods_does_not_stall_a_model_served_as_wanted() -> None:
    result = HandshakeResult(NEW, (pod("p1", v(1, "AVAILABLE")),
                                   pod("p2", v(1, "AVAILABLE"), applied=False)))
    pool = status.Pool(replicas=2, existing=2, ready=2)
    served = status.model_status(MODEL, SERVER, result, pool, NOW, None, "gave up after 60 s",
                                 unchanged=frozenset({"p2"}))
    assert served["state"] == "Available" and "gave up" not in served["message"]
    assert conditions(served)["Stalled"][0] == "False"
    behind = status.model_status(MODEL, SERVER, result, pool, NOW, None, "gave up after 60 s")
    assert behind["state"] == "Available" and behind["readyPods"] == "1/2"
    assert conditions(behind)["Stalled"] == ("True", "TimedOut")


def test_unreachable_pod_is_named_with_its_url() -> None:
    down = PodReport("p2", None, False, {}, "cannot connect to http://10.0.0.2:8081: timed out "
                     "after 5 s", url="http://10.0.0.2:8081")
    result = HandshakeResult(NEW, (pod("p1", v(1, "AVAILABLE")), down))
    out = status.model_status(MODEL, SERVER, result, status.Pool(2, 2, 2), NOW)
    assert out["message"] == (
        "available on 1 pod(s); waiting for p2 to load the new config; pod p2 "
        "(http://10.0.0.2:8081) unreachable: cannot connect to http://10.0.0.2:8081: timed out "
        "after 5 s")
    assert conditions(out)["ConfigApplied"] == ("False", "Unreachable")


def test_served_status_of_a_model_whose_server_spec_is_invalid() -> None:
    reports = (pod("p1", v(1, "AVAILABLE"), v(2, "AVAILABLE"), applied=False),
               pod("p2", v(1, "AVAILABLE"), v(2, "AVAILABLE"), applied=False))
    out = status.served_status(MODEL, "default", "spec.replicas: must be >= 0", reports, NOW,
                               {"configHash": OLD})
    assert out["message"] == (
        "InferenceServer 'default' spec is invalid: spec.replicas: must be >= 0; its pods still "
        "serve versions 1, 2 on 2 pod(s); the operator changes nothing until the server spec "
        "is fixed")
    assert (out["state"], out["readyPods"], out["availableVersions"], out["configHash"]) == (
        "Available", "2/2", "1,2", OLD)
    assert conditions(out)["Stalled"] == ("True", "ServerSpecInvalid")
    nothing = status.served_status(MODEL, "default", "bad", (), NOW)
    assert (nothing["state"], nothing["readyPods"]) == ("Pending", "0/0")


@pytest.mark.parametrize(("pool", "reason", "message"), [
    (status.Pool(3, 1, 1), "PodsMissing", "1 of 3 pod(s) exist, 1 ready"),
    (status.Pool(3, 3, 1, ("p2", "p3")), "PodsNotReady", "1 of 3 pod(s) ready; not ready: p2, p3"),
    (status.Pool(0, 0, 0), "ScaledToZero", "spec.replicas is 0: no pods to serve models"),
])
def test_server_ready_reason_says_what_is_missing(pool: status.Pool, reason: str,
                                                  message: str) -> None:
    server = ServerSpec.from_body(server_body(replicas=pool.replicas))
    reports = tuple(PodReport(f"p{i}", NEW, True) for i in range(pool.ready))
    out = status.server_status(server, "sel", pool, 1,
                               HandshakeResult(NEW, reports) if reports else None, NOW)
    ready = next(c for c in out["conditions"] if c["type"] == "Ready")
    assert (ready["reason"], ready["message"]) == (reason, message)
    assert ready["status"] == ("True" if reason == "ScaledToZero" else "False")


# ---------------------------------------------------------------- kstatus


def obj(st: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "status": st}


def test_every_status_reads_right_through_kstatus() -> None:
    available = fold(pod("p1", v(1, "AVAILABLE")), pod("p2", v(1, "AVAILABLE")),
                     pod("p3", v(1, "AVAILABLE")))
    assert kstatus(obj(available)) == "Current"
    assert kstatus(obj(fold(pod("p1", v(1, "LOADING"))))) == "InProgress"
    assert kstatus(obj(fold(pod("p1", v(1, "LOADING", "UNKNOWN", "bad IR"))))) == "Failed"
    assert kstatus(obj(fold(pod("p1", v(1, "AVAILABLE")), gave_up="gave up"))) == "Current"
    assert kstatus(obj(fold(pod("p1", v(1, "AVAILABLE"), applied=False),
                            gave_up="gave up"))) == "Failed"
    assert kstatus(obj(status.pending_status(MODEL, "ServerNotFound", "x", NOW))) == "InProgress"
    assert kstatus(obj(status.pending_status(MODEL, "NameConflict", "x", NOW,
                                             state=status.FAILED))) == "Failed"
    assert kstatus(obj(status.invalid_status("add", 1, "bad", NOW))) == "Failed"
    assert kstatus(obj(status.served_status(MODEL, "s", "bad", (), NOW))) == "Failed"
    server = ServerSpec.from_body(server_body(replicas=1))
    ok = status.server_status(server, "s", status.Pool(1, 1, 1), 1,
                              HandshakeResult(NEW, (PodReport("p", NEW, True),)), NOW)
    assert kstatus(obj(ok)) == "Current"
    assert kstatus(obj(status.server_status(server, "s", status.Pool(1, 0, 0), 1, None,
                                            NOW))) == "InProgress"
    assert kstatus(obj(status.server_status(server, "s", status.Pool(1, 0, 0), 1, None, NOW,
                                            gave_up="gave up"))) == "Failed"
    assert kstatus(obj(status.server_invalid_status(1, "bad", NOW))) == "Failed"


def test_observed_generation_moves_only_with_a_known_outcome() -> None:
    done = fold(pod("p1", v(1, "AVAILABLE")))
    assert done["observedGeneration"] == 1
    edited = ModelSpec.from_body({**model_body("add"), "metadata": {
        **model_body("add")["metadata"], "generation": 2}})
    pool = status.Pool(replicas=1, existing=1, ready=1)
    loading = status.model_status(edited, SERVER, HandshakeResult(NEW, (
        pod("p1", v(2, "LOADING")),)), pool, LATER, done)
    assert loading["observedGeneration"] == 1  # still the last generation with an outcome
    assert kstatus(obj(loading, generation=2)) == "InProgress"
    loaded = status.model_status(edited, SERVER, HandshakeResult(NEW, (
        pod("p1", v(2, "AVAILABLE")),)), pool, LATER, loading)
    assert loaded["observedGeneration"] == 2 and kstatus(obj(loaded, generation=2)) == "Current"
    assert all(c["observedGeneration"] == 2 for c in loading["conditions"])
    exactly_one = [sum(c["status"] == "True" for c in s["conditions"]
                       if c["type"] in ("Ready", "Reconciling", "Stalled"))
                   for s in (done, loading, loaded)]
    assert exactly_one == [1, 1, 1]
