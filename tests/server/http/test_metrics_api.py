"""``GET /metrics`` over real HTTP, after known traffic, read with prometheus_client's own parser.

The servers here are this module's own (not conftest's shared one), so nothing else moves the
counters: every expected value below is exact. See docs/metrics.md and wire-compat.md §2.5.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ovtest_models as models
import pytest
import requests
from ovtest_server import ServerProcess, start_server, write_config
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ovserve.server.config import DEFAULT_METRICS, OPTIONAL_METRICS

pytestmark = pytest.mark.timeout(300)

# wire-compat.md §2.5: floor(10 * 1.8**i), i = 0..32, then +Inf, as OVMS writes the le labels.
OVMS_LE = [
    "10", "18", "32", "58", "104", "188", "340", "612", "1101", "1983", "3570", "6426", "11568",
    "20822", "37481", "67466", "121439", "218591", "393464", "708235", "1274823", "2294682",
    "4130428", "7434771", "13382588", "24088659", "43359586", "78047255", "140485060",
    "252873108", "455171596", "819308872", "1474755971", "+Inf",
]  # fmt: skip
ALL_METRICS = (*DEFAULT_METRICS, *OPTIONAL_METRICS)
# Family names as the parser reports them (it strips the counter's _total).
OVSERVE_FAMILIES = {"ovserve_model_version_state", "ovserve_config_info", "ovserve_config_reloads"}
STATES = ("UNKNOWN", "START", "LOADING", "AVAILABLE", "UNLOADING", "END", "FAILED")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HASH_HEADER = "X-Ovserve-Config-Hash"

# Per loaded version (name, version): add has 2 streams and nireq 3, versioned 1 and 2.
ENTRIES: list[dict[str, object]] = [
    {"name": "add", "base_path": "add", "nireq": 3, "plugin_config": {"NUM_STREAMS": 2}},
    {
        "name": "versioned",
        "base_path": "versioned",
        "nireq": 2,
        "plugin_config": {"NUM_STREAMS": 1},
        "model_version_policy": {"all": {}},
    },
]
LOADED = (("add", "1"), ("versioned", "1"), ("versioned", "2"))
STREAMS = {("add", "1"): 2.0, ("versioned", "1"): 1.0, ("versioned", "2"): 1.0}
NIREQ = {("add", "1"): 3.0, ("versioned", "1"): 2.0, ("versioned", "2"): 2.0}

TFS_ROW = {"instances": [{"a": [[1, 2], [3, 4]], "b": [[1, 1], [1, 1]]}]}
TFS_COLUMN = {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 1], [1, 1]]]}}
TFS_BAD_SHAPE = {"inputs": {"a": [[1, 2, 3]], "b": [[1, 2, 3]]}}
MS_BODY = {"instances": [{"a": [[1.0, 2.0], [3.0, 4.0]], "b": [[1.0, 1.0], [1.0, 1.0]]}]}
# JSON integers are int32 to MindSpore Serving: against the float32 model every instance fails
# (HTTP 200 with error_msg), a failed MindSpore Predict on the version that was resolved.
MS_INT_BODY = {"instances": [{"a": [[1, 2], [3, 4]], "b": [[1, 1], [1, 1]]}]}


def v2_body(shape: list[int]) -> dict[str, object]:
    n = 1
    for d in shape:
        n *= d
    data = list(range(n))
    return {
        "inputs": [
            {"name": "a", "shape": shape, "datatype": "FP32", "data": data},
            {"name": "b", "shape": shape, "datatype": "FP32", "data": data},
        ]
    }


# -- helpers -------------------------------------------------------------------------------------


def build_repo(root: Path) -> None:
    models.add_model(root / "add")
    models.add_model(root / "versioned", version=1, offset=100.0)
    models.add_model(root / "versioned", version=2, offset=200.0)


def parse(text: str) -> dict[str, Metric]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def scrape(http: requests.Session, server: ServerProcess) -> dict[str, Metric]:
    r = http.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    return parse(r.text)


ReqKey = tuple[str, str, str, str | None]  # api, method, name, version


def requests_by_key(family: Metric) -> dict[ReqKey, float]:
    out: dict[ReqKey, float] = {}
    for s in family.samples:
        # the parser names counter samples *_total even when the text has none (OVMS's names
        # are pinned on the raw text in test_counters_keep_ovms_names_without_total)
        assert s.name == family.name + "_total"
        assert s.labels["interface"] == "REST"
        key = (s.labels["api"], s.labels["method"], s.labels["name"], s.labels.get("version"))
        assert key not in out
        out[key] = s.value
    return out


def by_name_version(family: Metric, suffix: str = "") -> dict[tuple[str, str], float]:
    return {
        (s.labels["name"], s.labels["version"]): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def zero_request_series(loaded: tuple[tuple[str, str], ...]) -> dict[ReqKey, float]:
    """The REST series OVMS creates at 0 for every loaded version."""
    out: dict[ReqKey, float] = {}
    for name, version in loaded:
        for api, method in (
            ("TensorFlowServing", "Predict"),
            ("TensorFlowServing", "GetModelMetadata"),
            ("KServe", "ModelInfer"),
            ("KServe", "ModelMetadata"),
        ):
            out[(api, method, name, version)] = 0.0
        out[("TensorFlowServing", "GetModelStatus", name, None)] = 0.0
        out[("KServe", "ModelReady", name, None)] = 0.0
    return out


def ovms_families(families: dict[str, Metric]) -> set[str]:
    return {n for n in families if n.startswith("ovms_")}


# -- the main server: every family enabled, known traffic ---------------------------------------


@dataclass
class Traffic:
    families: dict[str, Metric]
    text: str
    content_type: str
    config_hash: str
    config_path: Path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics-repo")
    build_repo(root)
    write_config(root / "config.json", ENTRIES)
    return root


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[ServerProcess]:
    proc = start_server(
        [
            "--config_path", str(repo / "config.json"),
            "--file_system_poll_wait_seconds", "0",
            "--metrics_enable",
            "--metrics_list", ",".join(ALL_METRICS),
        ],
        workdir=repo,
    )  # fmt: skip
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture(scope="module")
def traffic(server: ServerProcess, http: requests.Session, repo: Path) -> Traffic:
    """Send a known mix of requests, then scrape once."""
    base = server.url

    def post(path: str, body: object, status: int) -> None:
        r = http.post(base + path, data=json.dumps(body), timeout=30)
        assert r.status_code == status, (path, r.status_code, r.text)

    def get(path: str, status: int) -> None:
        r = http.get(base + path, timeout=30)
        assert r.status_code == status, (path, r.status_code, r.text)

    # TFS v1: 3 successful predicts on add (row and column form), 2 failing on shape
    post("/v1/models/add:predict", TFS_ROW, 200)
    post("/v1/models/add:predict", TFS_COLUMN, 200)
    post("/v1/models/add/versions/1:predict", TFS_ROW, 200)
    post("/v1/models/add:predict", TFS_BAD_SHAPE, 400)
    post("/v1/models/add/versions/1:predict", TFS_BAD_SHAPE, 400)
    # versioned: explicit v1, default (= highest, v2)
    post("/v1/models/versioned/versions/1:predict", TFS_ROW, 200)
    post("/v1/models/versioned:predict", TFS_ROW, 200)
    # not counted: unknown model, unknown version (no version resolved)
    post("/v1/models/nope:predict", TFS_ROW, 404)
    post("/v1/models/add/versions/9:predict", TFS_ROW, 404)
    # status and metadata
    get("/v1/models/add", 200)
    get("/v1/models/add", 200)
    get("/v1/models/add/metadata", 200)
    get("/v1/models/versioned/versions/7", 404)  # GetModelStatus has no version label: counted
    get("/v1/models/nope", 404)  # unknown model: not counted

    # KServe v2: 2 successful infers on add, 1 failing on shape, 1 on versioned v1
    post("/v2/models/add/infer", v2_body([1, 2, 2]), 200)
    post("/v2/models/add/versions/1/infer", v2_body([2, 2, 2]), 200)
    post("/v2/models/add/infer", v2_body([1, 3]), 400)
    post("/v2/models/versioned/versions/1/infer", v2_body([1, 2, 2]), 200)
    post("/v2/models/nope/infer", v2_body([1, 2, 2]), 404)
    get("/v2/models/add/ready", 200)
    get("/v2/models/add", 200)

    # MindSpore: one successful predict (one instance: one inference call), one failing
    r = http.post(base + "/model/add:predict", data=json.dumps(MS_BODY), timeout=30)
    assert r.status_code == 200, r.text
    assert "error_msg" not in r.text, r.text
    r = http.post(base + "/model/add:predict", data=json.dumps(MS_INT_BODY), timeout=30)
    assert r.status_code == 200, r.text
    assert "kMSI_Int32" in r.json()["error_msg"], r.text

    cfg = http.get(base + "/v1/config", timeout=10)
    assert cfg.status_code == 200
    m = http.get(base + "/metrics", timeout=10)
    assert m.status_code == 200, m.text
    return Traffic(
        families=parse(m.text),
        text=m.text,
        content_type=m.headers["Content-Type"],
        config_hash=cfg.headers[HASH_HEADER],
        config_path=repo / "config.json",
    )


def test_content_type_is_text_format_0_0_4(traffic: Traffic) -> None:
    assert traffic.content_type == CONTENT_TYPE


def test_every_listed_family_and_the_ovserve_families_are_exposed(traffic: Traffic) -> None:
    assert set(traffic.families) == set(ALL_METRICS) | OVSERVE_FAMILIES


def test_counters_keep_ovms_names_without_total(traffic: Traffic) -> None:
    lines = traffic.text.splitlines()
    for name in ("ovms_requests_success", "ovms_requests_fail"):
        assert f"# TYPE {name} counter" in lines
        assert not any(line.startswith(f"{name}_total") for line in lines)
    assert "# TYPE ovserve_config_reloads_total counter" in lines


def test_requests_success_by_api_method_name_version(traffic: Traffic) -> None:
    expected = zero_request_series(LOADED)
    expected.update({
        ("TensorFlowServing", "Predict", "add", "1"): 3.0,
        ("TensorFlowServing", "Predict", "versioned", "1"): 1.0,
        ("TensorFlowServing", "Predict", "versioned", "2"): 1.0,
        ("TensorFlowServing", "GetModelStatus", "add", None): 2.0,
        ("TensorFlowServing", "GetModelMetadata", "add", "1"): 1.0,
        ("KServe", "ModelInfer", "add", "1"): 2.0,
        ("KServe", "ModelInfer", "versioned", "1"): 1.0,
        ("KServe", "ModelReady", "add", None): 1.0,
        ("KServe", "ModelMetadata", "add", "1"): 1.0,
        ("MindSpore", "Predict", "add", "1"): 1.0,
    })  # fmt: skip
    assert requests_by_key(traffic.families["ovms_requests_success"]) == expected


def test_requests_fail_only_for_tracked_models_and_versions(traffic: Traffic) -> None:
    expected = zero_request_series(LOADED)
    expected.update({
        ("TensorFlowServing", "Predict", "add", "1"): 2.0,
        ("TensorFlowServing", "GetModelStatus", "versioned", None): 1.0,
        ("KServe", "ModelInfer", "add", "1"): 1.0,
        ("MindSpore", "Predict", "add", "1"): 1.0,
    })  # fmt: skip
    assert requests_by_key(traffic.families["ovms_requests_fail"]) == expected


def test_histograms_count_successful_inferences_with_ovms_buckets(traffic: Traffic) -> None:
    # add v1: 3 TFS + 2 KServe + 1 MindSpore; versioned v1: 1 TFS + 1 KServe; versioned v2: 1 TFS
    counts = {("add", "1"): 6.0, ("versioned", "1"): 2.0, ("versioned", "2"): 1.0}
    for name in ("ovms_request_time_us", "ovms_inference_time_us", "ovms_wait_for_infer_req_time_us"):
        family = traffic.families[name]
        assert family.type == "histogram"
        assert by_name_version(family, "_count") == counts, name
        for key, count in counts.items():
            buckets = [
                s
                for s in family.samples
                if s.name == name + "_bucket" and (s.labels["name"], s.labels["version"]) == key
            ]
            assert [b.labels["le"] for b in buckets] == OVMS_LE
            values = [b.value for b in buckets]
            assert values == sorted(values)  # cumulative
            assert values[-1] == count
            if name == "ovms_request_time_us":
                assert {b.labels["interface"] for b in buckets} == {"REST"}
        sums = by_name_version(family, "_sum")
        assert set(sums) == set(counts)
        if name != "ovms_wait_for_infer_req_time_us":  # a free infer request may be taken in 0 µs
            assert all(v > 0 for v in sums.values()), sums
    # a request's time encloses its inference time
    request_sums = by_name_version(traffic.families["ovms_request_time_us"], "_sum")
    infer_sums = by_name_version(traffic.families["ovms_inference_time_us"], "_sum")
    for key in counts:
        assert request_sums[key] >= infer_sums[key], key


def test_gauges_per_loaded_version(traffic: Traffic) -> None:
    f = traffic.families
    assert by_name_version(f["ovms_streams"]) == STREAMS
    assert by_name_version(f["ovms_infer_req_queue_size"]) == NIREQ
    idle = dict.fromkeys(LOADED, 0.0)  # nothing in flight while the scrape runs
    assert by_name_version(f["ovms_current_requests"]) == idle
    assert by_name_version(f["ovms_infer_req_active"]) == idle
    for name in (
        "ovms_streams",
        "ovms_infer_req_queue_size",
        "ovms_current_requests",
        "ovms_infer_req_active",
    ):
        assert f[name].type == "gauge"


def test_version_state_gauge_marks_available(traffic: Traffic) -> None:
    family = traffic.families["ovserve_model_version_state"]
    got = {(s.labels["name"], s.labels["version"], s.labels["state"]): s.value for s in family.samples}
    expected = {
        (name, version, state): 1.0 if state == "AVAILABLE" else 0.0
        for name, version in LOADED
        for state in STATES
    }
    assert got == expected


def test_config_info_matches_the_config_hash_header(traffic: Traffic) -> None:
    samples = traffic.families["ovserve_config_info"].samples
    assert [(s.labels, s.value) for s in samples] == [({"config_hash": traffic.config_hash}, 1.0)]
    assert traffic.config_hash == hashlib.sha256(traffic.config_path.read_bytes()).hexdigest()


def test_no_reloads_counted_before_any_reload(traffic: Traffic) -> None:
    samples = traffic.families["ovserve_config_reloads"].samples
    assert {s.labels["result"]: s.value for s in samples} == {"success": 0.0, "failure": 0.0}
    assert {s.name for s in samples} == {"ovserve_config_reloads_total"}


def test_reloads_counted_by_result_and_config_info_follows(
    traffic: Traffic, server: ServerProcess, http: requests.Session, repo: Path
) -> None:
    config = repo / "config.json"
    original = config.read_bytes()
    old_hash = traffic.config_hash

    def reload(status: int) -> requests.Response:
        r = http.post(f"{server.url}/v1/config/reload", timeout=60)
        assert r.status_code == status, r.text
        return r

    def reloads() -> dict[str, float]:
        family = scrape(http, server)["ovserve_config_reloads"]
        return {s.labels["result"]: s.value for s in family.samples}

    def info() -> list[str]:
        family = scrape(http, server)["ovserve_config_info"]
        return [s.labels["config_hash"] for s in family.samples]

    try:
        reload(200)  # nothing changed
        assert reloads() == {"success": 1.0, "failure": 0.0}
        config.write_text("{ not json")
        r = reload(412)
        assert r.headers[HASH_HEADER] == old_hash
        assert reloads() == {"success": 1.0, "failure": 1.0}
        assert info() == [old_hash]  # the applied config is still the old one
        # a changed config: versioned serves only v2 now; v1 retires (END) and leaves the gauges,
        # its counters keep their values
        only_v2 = {**ENTRIES[1], "model_version_policy": {"specific": {"versions": [2]}}}
        write_config(config, [ENTRIES[0], only_v2])
        new_hash = hashlib.sha256(config.read_bytes()).hexdigest()
        r = reload(201)
        assert r.headers[HASH_HEADER] == new_hash
        assert reloads() == {"success": 2.0, "failure": 1.0}
        assert info() == [new_hash]
        families = scrape(http, server)
        assert by_name_version(families["ovms_streams"]) == {
            ("add", "1"): 2.0,
            ("versioned", "2"): 1.0,
        }
        ok = requests_by_key(families["ovms_requests_success"])
        assert ok[("TensorFlowServing", "Predict", "versioned", "1")] == 1.0
        states = {
            (s.labels["name"], s.labels["version"], s.labels["state"]): s.value
            for s in families["ovserve_model_version_state"].samples
        }
        current = {k[:2]: k[2] for k, v in states.items() if v == 1.0}
        assert current == {
            ("add", "1"): "AVAILABLE",
            ("versioned", "1"): "END",
            ("versioned", "2"): "AVAILABLE",
        }
        assert len(states) == 3 * len(STATES)
    finally:
        config.write_bytes(original)


# -- other servers: the list filter, config.json's monitoring section, disabled ------------------


def _start(
    root: Path, entries: list[dict[str, object]], args: list[str], monitoring: dict[str, object] | None = None
) -> ServerProcess:
    extra = {"monitoring": {"metrics": monitoring}} if monitoring is not None else {}
    config = write_config(root / "config.json", entries, **extra)
    return start_server(
        ["--config_path", str(config), "--file_system_poll_wait_seconds", "0", *args], workdir=root
    )


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics-small")
    models.add_model(root / "add")
    return root


@pytest.mark.parametrize(
    ("args", "monitoring", "expected"),
    [
        pytest.param(
            ["--metrics_enable", "--metrics_list", "ovms_requests_success, ovms_infer_req_queue_size"],
            None,
            {"ovms_requests_success", "ovms_infer_req_queue_size"},
            id="flag-list",
        ),
        pytest.param(["--metrics_enable"], None, set(DEFAULT_METRICS), id="flag-default-list"),
        pytest.param([], {"enable": True}, set(DEFAULT_METRICS), id="config-default-list"),
        pytest.param(
            [],
            {"enable": True, "metrics_list": ["ovms_requests_fail", "ovms_infer_req_active"]},
            {"ovms_requests_fail", "ovms_infer_req_active"},
            id="config-list",
        ),
        pytest.param([], {"enable": True, "metrics_list": []}, set(), id="config-empty-list"),
        pytest.param(
            ["--metrics_enable"],
            {"enable": True, "metrics_list": ["ovms_streams"]},
            set(DEFAULT_METRICS),
            id="flag-over-config",  # --metrics_enable wins; the section is not read
        ),
    ],
)
def test_enabled_families(
    small_repo: Path,
    http: requests.Session,
    args: list[str],
    monitoring: dict[str, object] | None,
    expected: set[str],
) -> None:
    server = _start(small_repo, [{"name": "add", "base_path": "add"}], args, monitoring)
    try:
        r = http.post(f"{server.url}/v1/models/add:predict", json=TFS_ROW, timeout=30)
        assert r.status_code == 200, r.text
        m = http.get(f"{server.url}/metrics", timeout=10)
        assert m.status_code == 200, m.text
        assert m.headers["Content-Type"] == CONTENT_TYPE
        families = parse(m.text)
        assert ovms_families(families) == expected
        assert set(families) >= OVSERVE_FAMILIES
        if "ovms_requests_success" in expected:
            ok = requests_by_key(families["ovms_requests_success"])
            assert ok[("TensorFlowServing", "Predict", "add", "1")] == 1.0
        if "ovms_infer_req_active" in expected:
            assert by_name_version(families["ovms_infer_req_active"]) == {("add", "1"): 0.0}
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize(
    "monitoring",
    [None, {"enable": False}, {"enable": False, "metrics_list": ["ovms_streams"]}],
    ids=["no-section", "enable-false", "enable-false-with-list"],
)
def test_disabled_by_default_answers_invalid_request_url(
    small_repo: Path, http: requests.Session, monitoring: dict[str, object] | None
) -> None:
    # OVMS answers REST_INVALID_URL (400 "Invalid request URL") when metrics are not enabled.
    server = _start(small_repo, [{"name": "add", "base_path": "add"}], [], monitoring)
    try:
        m = http.get(f"{server.url}/metrics", timeout=10)
        assert m.status_code == 400
        assert m.json() == {"error": "Invalid request URL"}
        assert m.headers["Content-Type"].startswith("application/json")
    finally:
        assert server.stop() == 0, server.log()
