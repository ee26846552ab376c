"""ServerMetrics by value: OVMS's names, labels, buckets and HELP texts; the enabled-list filter;
scrape-time gauges from a fake ManagerView; the ovserve_* state, config and reload series.

Values are read with ``registry.get_sample_value`` and by parsing ``generate_latest`` with
prometheus_client's own text parser, as a scraper would.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ovserve.server.config import DEFAULT_METRICS, OPTIONAL_METRICS
from ovserve.server.metrics import BUCKETS, STATE_LABELS, ServerMetrics
from ovserve.server.types import State, VersionStatus

# wire-compat.md section 2.5 / OVMS docs/metrics_output.out
OVMS_BUCKETS = [
    10, 18, 32, 58, 104, 188, 340, 612, 1101, 1983, 3570, 6426, 11568, 20822, 37481, 67466,
    121439, 218591, 393464, 708235, 1274823, 2294682, 4130428, 7434771, 13382588, 24088659,
    43359586, 78047255, 140485060, 252873108, 455171596, 819308872, 1474755971,
]  # fmt: skip
OVMS_HELP = {
    "ovms_requests_success": "Number of successful requests to a model or a DAG.",
    "ovms_requests_fail": "Number of failed requests to a model or a DAG.",
    "ovms_request_time_us": "Processing time of requests to a model or a DAG.",
    "ovms_inference_time_us": "Inference execution time in the OpenVINO backend.",
    "ovms_wait_for_infer_req_time_us": "Request waiting time in the scheduling queue.",
    "ovms_streams": "Number of OpenVINO execution streams.",
    "ovms_current_requests": "Number of inference requests currently in process.",
    "ovms_infer_req_queue_size": "Inference request queue size (nireq).",
    "ovms_infer_req_active": (
        "Number of currently consumed inference request from the processing queue."
    ),
}
OVSERVE_FAMILIES = {"ovserve_model_version_state", "ovserve_config_info", "ovserve_config_reloads"}
ALL_METRICS = (*DEFAULT_METRICS, *OPTIONAL_METRICS)


@dataclass
class FakeModel:
    nireq: int = 4
    streams: int = 2
    active_requests: int = 0


@dataclass
class FakeServed:
    name: str
    version: int
    model: FakeModel = field(default_factory=FakeModel)


@dataclass
class FakeView:
    served: list[FakeServed] = field(default_factory=list)
    statuses: dict[str, list[VersionStatus]] = field(default_factory=dict)
    busy: dict[tuple[str, int], int] = field(default_factory=dict)
    config_hash: str | None = None

    def loaded(self) -> list[FakeServed]:
        return self.served

    def in_flight(self, name: str, version: int) -> int:
        return self.busy.get((name, version), 0)

    def all_statuses(self) -> dict[str, list[VersionStatus]]:
        return self.statuses


def available(*versions: int) -> list[VersionStatus]:
    return [VersionStatus(v, State.AVAILABLE) for v in versions]


def serving(name: str, *versions: int) -> FakeView:
    """A view where ``name`` has these versions loaded and AVAILABLE."""
    return FakeView(
        served=[FakeServed(name, v) for v in versions], statuses={name: available(*versions)}
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def families(registry: CollectorRegistry) -> dict[str, Metric]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def req(name: str, method: str, version: str | None = None, api: str = "KServe") -> dict[str, str]:
    labels = {"api": api, "interface": "REST", "method": method, "name": name}
    if version is not None:
        labels["version"] = version
    return labels


# -- names, HELP texts, enabled list ---------------------------------------------------------


def test_buckets_are_ovms_exponential_scheme() -> None:
    assert list(BUCKETS) == OVMS_BUCKETS
    assert list(BUCKETS) == [math.floor(10 * 1.8**i) for i in range(33)]


def test_default_list_exposes_default_families_with_ovms_help_and_types(
    registry: CollectorRegistry,
) -> None:
    ServerMetrics(registry)
    found = families(registry)
    assert set(found) == set(DEFAULT_METRICS) | OVSERVE_FAMILIES
    for name in DEFAULT_METRICS:
        assert found[name].documentation == OVMS_HELP[name]
    types = {name: found[name].type for name in DEFAULT_METRICS}
    assert types == {
        "ovms_requests_success": "counter",
        "ovms_requests_fail": "counter",
        "ovms_request_time_us": "histogram",
        "ovms_inference_time_us": "histogram",
        "ovms_wait_for_infer_req_time_us": "histogram",
        "ovms_streams": "gauge",
        "ovms_current_requests": "gauge",
    }
    assert found["ovserve_model_version_state"].type == "gauge"
    assert found["ovserve_config_info"].type == "gauge"
    assert found["ovserve_config_reloads"].type == "counter"


def test_every_metric_enabled_shows_optional_gauges_with_ovms_help(
    registry: CollectorRegistry,
) -> None:
    ServerMetrics(registry, ALL_METRICS).bind(serving("m", 1))
    found = families(registry)
    assert set(found) == set(ALL_METRICS) | OVSERVE_FAMILIES
    for name in OPTIONAL_METRICS:
        assert found[name].type == "gauge"
        assert found[name].documentation == OVMS_HELP[name]


@pytest.mark.parametrize(
    "enabled",
    [
        ["ovms_requests_success", "ovms_infer_req_queue_size"],
        ["ovms_request_time_us"],
        ["ovms_current_requests", "ovms_streams", "ovms_infer_req_active"],
    ],
)
def test_metrics_list_exposes_only_listed_families(
    registry: CollectorRegistry, enabled: list[str]
) -> None:
    metrics = ServerMetrics(registry, enabled)
    metrics.bind(serving("m", 1))
    metrics.observe_request(
        api="KServe", method="ModelInfer", name="m", version=1, ok=True, duration_us=50.0
    )
    metrics.observe_request(api="KServe", method="ModelInfer", name="m", version=1, ok=False)
    metrics.observe_inference(name="m", version=1, infer_us=40.0, wait_us=1.0)
    text = generate_latest(registry).decode()
    exposed = {f.name for f in text_string_to_metric_families(text)}
    assert exposed == set(enabled) | OVSERVE_FAMILIES
    for name in set(ALL_METRICS) - set(enabled):
        assert name not in text


def test_empty_metrics_list_exposes_only_ovserve_families(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry, [])
    metrics.bind(serving("m", 1))
    metrics.observe_request(api="KServe", method="ModelInfer", name="m", version=1, ok=True)
    assert set(families(registry)) == OVSERVE_FAMILIES


def test_unknown_metric_name_is_rejected(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="ovms_bogus"):
        ServerMetrics(registry, ["ovms_requests_success", "ovms_bogus"])


def test_series_live_on_the_injected_registry_only(registry: CollectorRegistry) -> None:
    other = CollectorRegistry()
    ServerMetrics(registry).observe_reload(ok=True)
    ServerMetrics(other)
    ok = {"result": "success"}
    assert registry.get_sample_value("ovserve_config_reloads_total", ok) == 1.0
    assert other.get_sample_value("ovserve_config_reloads_total", ok) == 0.0
    assert prometheus_client.REGISTRY.get_sample_value("ovserve_config_reloads_total", ok) is None


def test_second_instance_on_the_same_registry_is_a_duplicate(registry: CollectorRegistry) -> None:
    ServerMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        ServerMetrics(registry)


# -- request counters --------------------------------------------------------------------------


def test_counters_keep_ovms_sample_names_without_total(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    for _ in range(2):
        metrics.observe_request(api="KServe", method="ModelInfer", name="m", version=1, ok=True)
    text = generate_latest(registry).decode()
    assert (
        "# HELP ovms_requests_success Number of successful requests to a model or a DAG.\n"
        "# TYPE ovms_requests_success counter\n"
        'ovms_requests_success{api="KServe",interface="REST",method="ModelInfer",'
        'name="m",version="1"} 2.0\n'
    ) in text
    assert "# TYPE ovms_requests_fail counter\n" in text
    assert "ovms_requests_success_total" not in text
    assert "ovms_requests_fail_total" not in text
    assert registry.get_sample_value("ovms_requests_success", req("m", "ModelInfer", "1")) == 2.0
    # prometheus_client's parser reads OVMS's own output the same way: a counter whose samples it
    # renames to *_total internally.
    parsed = families(registry)["ovms_requests_success"]
    assert parsed.type == "counter"
    assert [(s.name, s.value) for s in parsed.samples] == [("ovms_requests_success_total", 2.0)]


def test_success_and_fail_counted_by_api_method_name_version(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    calls = [
        ("TensorFlowServing", "Predict", 1, True),
        ("TensorFlowServing", "Predict", 1, True),
        ("TensorFlowServing", "Predict", 2, False),
        ("TensorFlowServing", "GetModelMetadata", 2, True),
        ("KServe", "ModelMetadata", 1, False),
        ("MindSpore", "predict", 1, True),
    ]
    for api, method, version, ok in calls:
        metrics.observe_request(api=api, method=method, name="m", version=version, ok=ok)
    value = registry.get_sample_value
    tfs = "TensorFlowServing"
    assert value("ovms_requests_success", req("m", "Predict", "1", tfs)) == 2.0
    assert value("ovms_requests_fail", req("m", "Predict", "2", tfs)) == 1.0
    assert value("ovms_requests_success", req("m", "Predict", "2", tfs)) is None
    assert value("ovms_requests_success", req("m", "GetModelMetadata", "2", tfs)) == 1.0
    assert value("ovms_requests_fail", req("m", "ModelMetadata", "1")) == 1.0
    assert value("ovms_requests_success", req("m", "predict", "1", "MindSpore")) == 1.0


def test_status_and_ready_carry_no_version_label(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_request(
        api="TensorFlowServing", method="GetModelStatus", name="m", version=3, ok=True
    )
    metrics.observe_request(api="KServe", method="ModelReady", name="m", version=None, ok=True)
    label_sets = [s.labels for s in families(registry)["ovms_requests_success"].samples]
    assert label_sets == [
        req("m", "ModelReady"),
        req("m", "GetModelStatus", api="TensorFlowServing"),
    ]


def test_interface_label_is_taken_from_the_caller(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_request(
        api="KServe", method="ModelInfer", name="m", version=1, ok=True, interface="gRPC"
    )
    labels = {**req("m", "ModelInfer", "1"), "interface": "gRPC"}
    assert registry.get_sample_value("ovms_requests_success", labels) == 1.0


def test_versioned_request_that_resolved_no_version_is_not_counted(
    registry: CollectorRegistry,
) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_request(api="KServe", method="ModelInfer", name="m", version=None, ok=False)
    metrics.observe_request(
        api="TensorFlowServing", method="Predict", name="m", version=None, ok=True, duration_us=9.0
    )
    found = families(registry)
    assert found["ovms_requests_fail"].samples == []
    assert found["ovms_requests_success"].samples == []
    assert found["ovms_request_time_us"].samples == []


def test_failures_count_only_for_models_and_versions_the_manager_tracks(
    registry: CollectorRegistry,
) -> None:
    metrics = ServerMetrics(registry)
    metrics.bind(serving("m", 1))
    fail = metrics.observe_request
    fail(api="KServe", method="ModelInfer", name="m", version=1, ok=False)
    fail(api="KServe", method="ModelInfer", name="m", version=7, ok=False)
    fail(api="KServe", method="ModelInfer", name="nope", version=1, ok=False)
    fail(api="TensorFlowServing", method="GetModelStatus", name="m", version=None, ok=False)
    fail(api="TensorFlowServing", method="GetModelStatus", name="nope", version=None, ok=False)
    names_versions = {
        (s.labels["name"], s.labels.get("version"))
        for s in families(registry)["ovms_requests_fail"].samples
        if s.value > 0
    }
    assert names_versions == {("m", "1"), ("m", None)}
    assert registry.get_sample_value("ovms_requests_fail", req("m", "ModelInfer", "1")) == 1.0


def test_failures_before_bind_are_counted(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_request(api="KServe", method="ModelInfer", name="x", version=4, ok=False)
    assert registry.get_sample_value("ovms_requests_fail", req("x", "ModelInfer", "4")) == 1.0


# -- histograms --------------------------------------------------------------------------------


def test_request_time_histogram_buckets_are_cumulative_with_ovms_le_labels(
    registry: CollectorRegistry,
) -> None:
    metrics = ServerMetrics(registry)
    durations = [5.0, 10.0, 11.0, 1101.0, 1102.0, 2e9]
    for d in durations:
        metrics.observe_request(
            api="KServe", method="ModelInfer", name="m", version=1, ok=True, duration_us=d
        )
    labels = {"interface": "REST", "name": "m", "version": "1"}
    family = families(registry)["ovms_request_time_us"]
    buckets = [s for s in family.samples if s.name == "ovms_request_time_us_bucket"]
    assert [s.labels["le"] for s in buckets] == [*map(str, OVMS_BUCKETS), "+Inf"]
    assert all({k: v for k, v in s.labels.items() if k != "le"} == labels for s in buckets)

    def bucket(le: str) -> float | None:
        return registry.get_sample_value("ovms_request_time_us_bucket", {**labels, "le": le})

    assert bucket("10") == 2.0  # an observation equal to a bound falls in that bucket
    assert bucket("18") == 3.0
    assert bucket("612") == 3.0
    assert bucket("1101") == 4.0
    assert bucket("1983") == 5.0
    assert bucket("1474755971") == 5.0
    assert bucket("+Inf") == 6.0
    assert registry.get_sample_value("ovms_request_time_us_count", labels) == 6.0
    assert registry.get_sample_value("ovms_request_time_us_sum", labels) == sum(durations)


def test_request_time_needs_a_duration(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_request(
        api="TensorFlowServing", method="GetModelMetadata", name="m", version=1, ok=True
    )
    assert families(registry)["ovms_request_time_us"].samples == []
    assert registry.get_sample_value(
        "ovms_requests_success", req("m", "GetModelMetadata", "1", "TensorFlowServing")
    ) == 1.0  # fmt: skip


def test_inference_and_wait_histograms_by_name_and_version(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.observe_inference(name="m", version=2, infer_us=300.0, wait_us=12.0)
    metrics.observe_inference(name="m", version=2, infer_us=700.0, wait_us=20.0)
    labels = {"name": "m", "version": "2"}
    value = registry.get_sample_value
    assert value("ovms_inference_time_us_count", labels) == 2.0
    assert value("ovms_inference_time_us_sum", labels) == 1000.0
    assert value("ovms_inference_time_us_bucket", {**labels, "le": "340"}) == 1.0
    assert value("ovms_inference_time_us_bucket", {**labels, "le": "708235"}) == 2.0
    assert value("ovms_wait_for_infer_req_time_us_sum", labels) == 32.0
    assert value("ovms_wait_for_infer_req_time_us_bucket", {**labels, "le": "18"}) == 1.0
    assert value("ovms_wait_for_infer_req_time_us_bucket", {**labels, "le": "32"}) == 2.0


# -- scrape-time series from the manager -------------------------------------------------------


def test_gauges_are_read_from_the_view_at_each_scrape(registry: CollectorRegistry) -> None:
    view = FakeView(
        served=[
            FakeServed("a", 1, FakeModel(nireq=4, streams=2, active_requests=1)),
            FakeServed("b", 3, FakeModel(nireq=8, streams=6, active_requests=0)),
        ],
        statuses={"a": available(1), "b": available(3)},
        busy={("a", 1): 5},
    )
    ServerMetrics(registry, ALL_METRICS).bind(view)
    value = registry.get_sample_value
    a1, b3 = {"name": "a", "version": "1"}, {"name": "b", "version": "3"}
    assert value("ovms_streams", a1) == 2.0
    assert value("ovms_streams", b3) == 6.0
    assert value("ovms_infer_req_queue_size", b3) == 8.0
    assert value("ovms_infer_req_active", a1) == 1.0
    assert value("ovms_current_requests", a1) == 5.0
    assert value("ovms_current_requests", b3) == 0.0

    view.busy[("a", 1)] = 0
    view.served[0].model.active_requests = 3
    view.served.pop()  # b version 3 unloaded
    assert value("ovms_current_requests", a1) == 0.0
    assert value("ovms_infer_req_active", a1) == 3.0
    assert value("ovms_streams", b3) is None
    assert value("ovms_current_requests", b3) is None


def test_gauges_are_empty_before_bind(registry: CollectorRegistry) -> None:
    ServerMetrics(registry, ALL_METRICS)
    found = families(registry)
    for name in ("ovms_streams", "ovms_current_requests", *OPTIONAL_METRICS):
        assert found[name].samples == []
    assert found["ovserve_model_version_state"].samples == []
    assert found["ovserve_config_info"].samples == []


def test_loaded_versions_get_their_rest_series_at_zero(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    metrics.bind(serving("m", 1))
    metrics.observe_request(api="KServe", method="ModelInfer", name="m", version=1, ok=True)
    found = families(registry)
    success = {
        (s.labels["api"], s.labels["method"], s.labels.get("version")): s.value
        for s in found["ovms_requests_success"].samples
    }
    assert success == {
        ("KServe", "ModelInfer", "1"): 1.0,  # the observed value is kept
        ("KServe", "ModelMetadata", "1"): 0.0,
        ("KServe", "ModelReady", None): 0.0,
        ("TensorFlowServing", "Predict", "1"): 0.0,
        ("TensorFlowServing", "GetModelMetadata", "1"): 0.0,
        ("TensorFlowServing", "GetModelStatus", None): 0.0,
    }
    assert len(found["ovms_requests_fail"].samples) == 6
    assert all(s.labels["interface"] == "REST" for s in found["ovms_requests_fail"].samples)
    value = registry.get_sample_value
    rest_m1 = {"interface": "REST", "name": "m", "version": "1"}
    assert value("ovms_request_time_us_count", rest_m1) == 0.0
    assert value("ovms_inference_time_us_count", {"name": "m", "version": "1"}) == 0.0
    assert value("ovms_wait_for_infer_req_time_us_bucket", {
        "name": "m", "version": "1", "le": "+Inf"
    }) == 0.0  # fmt: skip


def test_version_state_gauge_is_one_for_the_current_state_only(
    registry: CollectorRegistry,
) -> None:
    view = FakeView(
        statuses={
            "m": [
                VersionStatus(1, State.END),
                VersionStatus(2, State.AVAILABLE),
                VersionStatus(3, State.LOADING, "UNKNOWN", "Cannot compile model"),
            ],
            "n": [VersionStatus(1, State.LOADING)],
        }
    )
    ServerMetrics(registry, []).bind(view)
    samples = families(registry)["ovserve_model_version_state"].samples
    current = {
        (s.labels["name"], s.labels["version"]): s.labels["state"] for s in samples if s.value == 1
    }
    assert current == {("m", "1"): "END", ("m", "2"): "AVAILABLE", ("m", "3"): "FAILED",
                       ("n", "1"): "LOADING"}  # fmt: skip
    assert len(samples) == 4 * len(STATE_LABELS)
    assert {s.labels["state"] for s in samples} == set(STATE_LABELS)
    assert {s.value for s in samples} == {0.0, 1.0}
    value = registry.get_sample_value
    assert value(
        "ovserve_model_version_state", {"name": "m", "version": "3", "state": "LOADING"}
    ) == 0.0  # fmt: skip

    view.statuses["m"][2] = VersionStatus(3, State.AVAILABLE)  # a later reload fixed it
    assert value(
        "ovserve_model_version_state", {"name": "m", "version": "3", "state": "FAILED"}
    ) == 0.0  # fmt: skip
    assert value(
        "ovserve_model_version_state", {"name": "m", "version": "3", "state": "AVAILABLE"}
    ) == 1.0  # fmt: skip


def test_config_info_carries_the_applied_hash(registry: CollectorRegistry) -> None:
    view = FakeView(config_hash="ab" * 32)
    ServerMetrics(registry).bind(view)
    assert registry.get_sample_value("ovserve_config_info", {"config_hash": "ab" * 32}) == 1.0
    view.config_hash = "cd" * 32
    samples = families(registry)["ovserve_config_info"].samples
    assert [(s.labels, s.value) for s in samples] == [({"config_hash": "cd" * 32}, 1.0)]
    view.config_hash = None
    assert families(registry)["ovserve_config_info"].samples == []


def test_reload_counters_by_result(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)
    value = registry.get_sample_value
    assert value("ovserve_config_reloads_total", {"result": "success"}) == 0.0
    assert value("ovserve_config_reloads_total", {"result": "failure"}) == 0.0
    for ok in (True, True, False):
        metrics.observe_reload(ok=ok)
    assert value("ovserve_config_reloads_total", {"result": "success"}) == 2.0
    assert value("ovserve_config_reloads_total", {"result": "failure"}) == 1.0
    assert "# TYPE ovserve_config_reloads_total counter\n" in generate_latest(registry).decode()


def test_observations_from_several_threads_are_all_counted(registry: CollectorRegistry) -> None:
    metrics = ServerMetrics(registry)

    def work() -> None:
        for _ in range(500):
            metrics.observe_request(
                api="KServe", method="ModelInfer", name="m", version=1, ok=True, duration_us=20.0
            )
            metrics.observe_inference(name="m", version=1, infer_us=15.0, wait_us=1.0)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    value = registry.get_sample_value
    assert value("ovms_requests_success", req("m", "ModelInfer", "1")) == 2000.0
    rest_m1 = {"interface": "REST", "name": "m", "version": "1"}
    assert value("ovms_request_time_us_count", rest_m1) == 2000.0
    assert value("ovms_request_time_us_bucket", {**rest_m1, "le": "32"}) == 2000.0
    assert value("ovms_inference_time_us_count", {"name": "m", "version": "1"}) == 2000.0
