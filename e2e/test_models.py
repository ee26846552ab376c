"""End to end on kind: InferenceModels served by the chart's default InferenceServer.

The model files come from harness.build_models (adder v1: a+b, v2: a+b+100; broken: not a
model), copied onto the node and mounted by the server pods through hostPath. Requests go
through the API server's proxy to the Service named after the InferenceServer ("default"), or
to single pods where a per-pod answer is the point (metrics, unload).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(900)

A = [1.0, 2.0, 3.0, 4.0]
B = [10.0, 20.0, 30.0, 40.0]
SUM = [11.0, 22.0, 33.0, 44.0]
SUM_V2 = [s + 100.0 for s in SUM]
REST_PORT = 8081  # the CRD's default restPort, which the e2e release keeps


def state_of(cluster: Any, name: str) -> dict[str, Any]:
    im = cluster.get("inferencemodels", name)
    assert im is not None, f"InferenceModel {name} is gone"
    status: dict[str, Any] = im.get("status") or {}
    return status


def wait_state(cluster: Any, wait_for: Any, name: str, state: str, *,
               versions: str | None = None, timeout: float = 300) -> dict[str, Any]:
    """Wait until the model's status says ``state`` (and ``versions`` AVAILABLE on every pod)."""

    def probe() -> dict[str, Any] | None:
        st = state_of(cluster, name)
        assert st.get("state") == state, f"state={st.get('state')} message={st.get('message')}"
        if versions is not None:
            assert st.get("availableVersions") == versions, st
            ready, _, total = str(st.get("readyPods", "")).partition("/")
            assert ready == total and ready not in ("", "0"), st
        return st

    result: dict[str, Any] = wait_for(f"InferenceModel {name} to be {state}", probe,
                                      timeout=timeout)
    return result


@pytest.fixture(scope="module")
def adder(cluster: Any, server_pods: list[Any], wait_for: Any) -> Iterator[str]:
    """InferenceModel "adder" serving the latest version (2) on the default server."""
    cluster.create("inferencemodels", {
        "apiVersion": "ovserve.io/v1alpha1", "kind": "InferenceModel",
        "metadata": {"name": "adder"},
        "spec": {"basePath": "adder", "versionPolicy": {"latest": {"numVersions": 1}}},
    })
    wait_state(cluster, wait_for, "adder", "Available", versions="2")
    yield "adder"
    cluster.delete("inferencemodels", "adder")


def predict_tfs(cluster: Any, name: str, version: int | None = None) -> tuple[int, Any]:
    path = f"v1/models/{name}" + (f"/versions/{version}" if version else "") + ":predict"
    status, body = cluster.service_http("default", "POST", path,
                                        {"instances": [{"a": A, "b": B}]})
    return int(status), body


def test_model_becomes_available_on_every_pod(cluster: Any, adder: str, wait_for: Any,
                                              server_pods: list[Any]) -> None:
    st = state_of(cluster, adder)
    assert st["state"] == "Available"
    assert st["availableVersions"] == "2"
    assert st["readyPods"] == f"{len(server_pods)}/{len(server_pods)}"
    conditions = {c["type"]: c["status"] for c in st.get("conditions", [])}
    assert conditions.get("Ready") == "True"
    assert conditions.get("ConfigApplied") == "True"
    # what `kubectl get im` prints (the API server's table for the CRD's printer columns)
    (row,) = [r for r in cluster.table("inferencemodels") if r["Name"] == adder]
    assert row["Server"] == "default" and row["Device"] == "CPU"
    assert row["State"] == "Available" and row["Versions"] == "2"
    # the InferenceServer reports the config its pods applied (written in the same pass, or
    # by the next periodic check)
    def server_applied() -> dict[str, Any] | None:
        isrv = cluster.get("inferenceservers", "default") or {}
        status = isrv.get("status") or {}
        assert status.get("configHash") == st["configHash"], status
        return status

    status = wait_for("the InferenceServer to report the applied config", server_applied,
                      timeout=120)
    assert status["models"] >= 1
    assert status["readyReplicas"] == len(server_pods)


def test_predict_tfs_v1_row_and_column(cluster: Any, adder: str) -> None:
    status, body = predict_tfs(cluster, adder)
    assert status == 200, body
    assert body == {"predictions": [SUM_V2]}
    status, body = cluster.service_http("default", "POST", f"v1/models/{adder}:predict",
                                        {"inputs": {"a": [A], "b": [B]}})
    assert status == 200, body
    assert body == {"outputs": [SUM_V2]}
    status, body = cluster.service_http("default", "GET", f"v1/models/{adder}")
    assert status == 200, body
    (version,) = body["model_version_status"]
    assert version["version"] == "2" and version["state"] == "AVAILABLE"


def test_predict_kserve_v2(cluster: Any, adder: str) -> None:
    status, body = cluster.service_http("default", "GET", f"v2/models/{adder}/ready")
    assert status == 200, body
    request = {"inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": A},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": B},
    ]}
    status, body = cluster.service_http("default", "POST", f"v2/models/{adder}/infer", request)
    assert status == 200, body
    assert body["model_name"] == adder and body["model_version"] == "2"
    (out,) = body["outputs"]
    assert out["name"] == "sum" and out["datatype"] == "FP32" and out["shape"] == [1, 4]
    assert out["data"] == SUM_V2


def test_predict_mindspore(cluster: Any, adder: str) -> None:
    status, body = cluster.service_http("default", "POST", f"model/{adder}:predict",
                                        {"instances": [{"a": A, "b": B}, {"a": B, "b": A}]})
    assert status == 200, body
    assert "error_msg" not in body, body
    assert body == {"instances": [{"sum": SUM_V2}, {"sum": SUM_V2}]}


def test_version_policy_edit_reloads_without_restarting_pods(
        cluster: Any, adder: str, server_pods: list[Any], wait_for: Any,
        restarts_by_pod: Any) -> None:
    selector = "app.kubernetes.io/name=ovserve-server,app.kubernetes.io/instance=default"
    before = restarts_by_pod(cluster.pods(selector))
    assert len(before) == len(server_pods)
    config_hash = state_of(cluster, adder)["configHash"]

    cluster.replace_spec_key("inferencemodels", adder, "versionPolicy",
                             {"specific": {"versions": [1]}})
    st = wait_state(cluster, wait_for, adder, "Available", versions="1")
    assert st["configHash"] != config_hash
    status, body = predict_tfs(cluster, adder)
    assert status == 200 and body == {"predictions": [SUM]}, body  # v1: a + b, no offset
    status, body = predict_tfs(cluster, adder, version=2)
    assert status == 404, body  # v2 is no longer served

    cluster.replace_spec_key("inferencemodels", adder, "versionPolicy", {"all": {}})
    wait_state(cluster, wait_for, adder, "Available", versions="1,2")
    assert predict_tfs(cluster, adder, version=1) == (200, {"predictions": [SUM]})
    assert predict_tfs(cluster, adder, version=2) == (200, {"predictions": [SUM_V2]})

    # same pods (uids), no container restarts: the change went through /v1/config/reload
    assert restarts_by_pod(cluster.pods(selector)) == before

    cluster.replace_spec_key("inferencemodels", adder, "versionPolicy",
                             {"latest": {"numVersions": 1}})
    wait_state(cluster, wait_for, adder, "Available", versions="2")


def test_failing_model_reports_its_error(cluster: Any, model: Any, wait_for: Any,
                                         server_pods: list[Any]) -> None:
    name = model("broken", basePath="broken")
    st = wait_state(cluster, wait_for, name, "Failed")
    errors = [err for _, _, err in _versions(st) if err]
    text = " ".join([st.get("message", ""), *errors])
    # the server's real error text, not a bare code name such as OVMS's "UNKNOWN"
    assert text.strip() and text.strip() != "UNKNOWN", st
    conditions = {c["type"]: c["status"] for c in st.get("conditions", [])}
    assert conditions.get("Ready") == "False"
    (row,) = [r for r in cluster.table("inferencemodels") if r["Name"] == name]
    assert row["State"] == "Failed"
    assert row["Message"] == st.get("message", ""), row  # the error shows in `kubectl get im`
    # the failure stays with this model: the others still answer
    status, _ = cluster.service_http("default", "GET", "v2/health/ready")
    assert status == 200


def _versions(status: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(int(v["version"]), str(v["state"]), str(v.get("errorMessage", "")))
            for v in status.get("versions") or []]


def test_delete_unloads_from_every_pod(cluster: Any, model: Any, wait_for: Any,
                                       server_pods: list[Any]) -> None:
    name = model("short-lived", basePath="adder")
    wait_state(cluster, wait_for, name, "Available", versions="2")
    assert predict_tfs(cluster, name)[0] == 200

    cluster.delete("inferencemodels", name)
    wait_for(f"InferenceModel {name} to be gone",
             lambda: True if cluster.get("inferencemodels", name) is None else None,
             timeout=300)

    def unloaded_everywhere() -> bool | None:
        for pod in server_pods:
            config = json.loads(cluster.pod_text(pod.metadata.name, "v1/config", REST_PORT))
            entry = config.get(name)
            if entry is not None:
                states = {v["state"] for v in entry["model_version_status"]}
                assert states <= {"END"}, f"{pod.metadata.name}: {states}"
        return True

    wait_for(f"{name} to be unloaded on every pod", unloaded_everywhere, timeout=120)
    status, _ = predict_tfs(cluster, name)
    assert status == 404


def test_metrics_show_the_traffic(cluster: Any, model: Any, wait_for: Any,
                                  server_pods: list[Any]) -> None:
    name = model("metered", basePath="adder")
    wait_state(cluster, wait_for, name, "Available", versions="2")
    for _ in range(5):
        assert predict_tfs(cluster, name)[0] == 200
    request = {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": A},
                          {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": B}]}
    for _ in range(3):
        assert cluster.service_http("default", "POST", f"v2/models/{name}/infer", request)[0] == 200

    totals: dict[str, float] = {}
    for pod in server_pods:
        text = cluster.pod_text(pod.metadata.name, "metrics", REST_PORT)
        for family in text_string_to_metric_families(text):
            if family.name != "ovms_requests_success":
                continue
            for sample in family.samples:
                labels = sample.labels
                if labels.get("name") == name and labels.get("interface") == "REST":
                    key = f"{labels['api']}/{labels['method']}"
                    totals[key] = totals.get(key, 0.0) + sample.value
    assert totals.get("TensorFlowServing/Predict") == 5.0, totals
    assert totals.get("KServe/ModelInfer") == 3.0, totals
