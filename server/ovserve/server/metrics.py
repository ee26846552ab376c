"""Prometheus series of the model server, named and shaped as OpenVINO Model Server's.

Who calls it: ``cli.py`` builds one :class:`ServerMetrics` on a fresh ``CollectorRegistry``
(never the global one) and binds it to the ``ModelManager`` once the first load is done; the
http handlers call :meth:`ServerMetrics.observe_request`, :meth:`~ServerMetrics.observe_inference`
and :meth:`~ServerMetrics.observe_reload`; ``GET /metrics`` renders the registry with
``prometheus_client.generate_latest`` (text format 0.0.4, as OVMS serves it).

What a scrape shows (abridged; ``docs/metrics.md`` lists every family)::

    # HELP ovms_requests_fail Number of failed requests to a model or a DAG.
    # TYPE ovms_requests_fail counter
    ovms_requests_fail{api="KServe",interface="REST",method="ModelInfer",name="m",version="1"} 1.0
    ovms_requests_fail{api="KServe",interface="REST",method="ModelReady",name="m"} 0.0
    # HELP ovms_streams Number of OpenVINO execution streams.
    # TYPE ovms_streams gauge
    ovms_streams{name="m",version="1"} 2.0
    # HELP ovms_request_time_us Processing time of requests to a model or a DAG.
    # TYPE ovms_request_time_us histogram
    ovms_request_time_us_bucket{interface="REST",le="10",name="m",version="1"} 0.0
    ...
    ovms_request_time_us_bucket{interface="REST",le="+Inf",name="m",version="1"} 3.0
    ovms_request_time_us_count{interface="REST",name="m",version="1"} 3.0
    ovms_request_time_us_sum{interface="REST",name="m",version="1"} 2911.0
    # HELP ovserve_model_version_state State of a model version: 1 for its current state, ...
    # TYPE ovserve_model_version_state gauge
    ovserve_model_version_state{name="m",state="AVAILABLE",version="1"} 1.0

Design points:

* **OVMS's exact sample names.** OVMS exposes its counters as ``ovms_requests_success{...}``
  under ``# TYPE ovms_requests_success counter`` (no ``_total``). prometheus_client appends
  ``_total`` to every family typed ``counter``; these two families carry a TYPE word that prints
  as ``counter`` but is not equal to it (:class:`_VerbatimType`), so the HELP/TYPE lines and the
  samples keep OVMS's names. A test pins the rendered lines.
* **OVMS's bucket labels.** Histograms use OVMS's buckets ``floor(10 * 1.8**i)``, i = 0..32, with
  ``le`` written as OVMS writes it (``le="1101"``, not ``le="1101.0"`` or ``1.474755971e+09``).
* **Series exist at 0 from load time**, as OVMS creates them when a version loads: every loaded
  version gets its REST request counters and histograms at 0 at scrape time, so ``rate()`` sees
  the first request.
* **Failures are attributed only to servables that exist** (OVMS counts on the model's own
  reporter): a failed request naming an unknown model or version is not counted, which also keeps
  clients from minting label values.
* **Gauges are computed at scrape time** from the bound :class:`ManagerView`; nothing to keep in
  sync, nothing to drift. Per-request work is one dict update under one lock.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import CollectorRegistry

from .config import DEFAULT_METRICS, OPTIONAL_METRICS
from .types import State, VersionStatus

__all__ = [
    "BUCKETS",
    "HELP",
    "STATE_LABELS",
    "ManagerView",
    "ModelStats",
    "ServedModelLike",
    "ServerMetrics",
]

REQUESTS_SUCCESS = "ovms_requests_success"
REQUESTS_FAIL = "ovms_requests_fail"
REQUEST_TIME = "ovms_request_time_us"
INFERENCE_TIME = "ovms_inference_time_us"
WAIT_TIME = "ovms_wait_for_infer_req_time_us"
STREAMS = "ovms_streams"
CURRENT_REQUESTS = "ovms_current_requests"
QUEUE_SIZE = "ovms_infer_req_queue_size"
REQ_ACTIVE = "ovms_infer_req_active"
VERSION_STATE = "ovserve_model_version_state"
CONFIG_INFO = "ovserve_config_info"
CONFIG_RELOADS = "ovserve_config_reloads"  # exposed as ovserve_config_reloads_total

#: OVMS's histogram buckets (``src/model_metric_reporter.cpp``): floor(10 * 1.8**i), i = 0..32.
BUCKETS: tuple[int, ...] = tuple(int(10 * 1.8**i) for i in range(33))
_LE: tuple[str, ...] = (*(str(b) for b in BUCKETS), "+Inf")

#: HELP texts, OVMS's verbatim for the ``ovms_*`` families.
HELP: dict[str, str] = {
    REQUESTS_SUCCESS: "Number of successful requests to a model or a DAG.",
    REQUESTS_FAIL: "Number of failed requests to a model or a DAG.",
    STREAMS: "Number of OpenVINO execution streams.",
    QUEUE_SIZE: "Inference request queue size (nireq).",
    REQ_ACTIVE: "Number of currently consumed inference request from the processing queue.",
    CURRENT_REQUESTS: "Number of inference requests currently in process.",
    REQUEST_TIME: "Processing time of requests to a model or a DAG.",
    INFERENCE_TIME: "Inference execution time in the OpenVINO backend.",
    WAIT_TIME: "Request waiting time in the scheduling queue.",
    VERSION_STATE: "State of a model version: 1 for its current state, 0 for the others. "
    "FAILED is a load that failed (OVMS reports it as LOADING with error UNKNOWN).",
    CONFIG_INFO: "SHA-256 of the config.json bytes the server has applied (value is always 1).",
    CONFIG_RELOADS: "POST /v1/config/reload requests by result.",
}

#: Every value the ``state`` label of ``ovserve_model_version_state`` takes, in this order.
STATE_LABELS: tuple[str, ...] = (*(s.name for s in State), "FAILED")

# OVMS's methods without a version label, and the REST series OVMS creates at load time.
_UNVERSIONED = frozenset({"GetModelStatus", "ModelReady"})
_PRESET = (
    ("TensorFlowServing", "Predict"),
    ("TensorFlowServing", "GetModelMetadata"),
    ("TensorFlowServing", "GetModelStatus"),
    ("KServe", "ModelInfer"),
    ("KServe", "ModelMetadata"),
    ("KServe", "ModelReady"),
)
# Family order of an OVMS scrape.
_ORDER = (
    REQUESTS_SUCCESS, REQUESTS_FAIL, STREAMS, QUEUE_SIZE, REQ_ACTIVE, CURRENT_REQUESTS,
    REQUEST_TIME, INFERENCE_TIME, WAIT_TIME,
)  # fmt: skip

_ReqKey = tuple[str, str, str, str, int | None]  # api, interface, method, name, version
# Histogram keys are the label values in label order: (interface, name, version) for
# ovms_request_time_us, (name, version) for the two inference histograms.
_HistKey = tuple[str | int, ...]


class ModelStats(Protocol):
    """What the gauges read from a loaded model (``backend.base.LoadedModel``)."""

    @property
    def nireq(self) -> int: ...
    @property
    def streams(self) -> int: ...
    @property
    def active_requests(self) -> int: ...


class ServedModelLike(Protocol):
    """One AVAILABLE version (``manager.ServedModel``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def model(self) -> ModelStats: ...


class ManagerView(Protocol):
    """The read-only part of ``ModelManager`` a scrape needs."""

    def loaded(self) -> Sequence[ServedModelLike]: ...
    def in_flight(self, name: str, version: int) -> int: ...
    def all_statuses(self) -> Mapping[str, Sequence[VersionStatus]]: ...
    @property
    def config_hash(self) -> str | None: ...


class _VerbatimType(str):
    """A TYPE word that ``generate_latest`` writes as is.

    ``generate_latest`` renames a family typed ``"counter"`` to ``<name>_total`` in its HELP and
    TYPE lines. An instance of this class prints as ``counter`` but compares unequal to the plain
    string, so that renaming is skipped and the lines read ``# TYPE ovms_requests_success counter``,
    matching the samples, exactly as OVMS writes them. The registry's name bookkeeping then also
    records the family under its bare name, which is the name of its samples.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VerbatimType) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


_OVMS_COUNTER = _VerbatimType("counter")


class _Histogram:
    """Per-bucket (not cumulative) counts for OVMS's buckets, plus +Inf, and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * len(_LE)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def copy(self) -> _Histogram:
        h = _Histogram()
        h.counts = self.counts.copy()
        h.total = self.total
        return h


class ServerMetrics:
    """All series of one server process, on the registry it is given.

    ``enabled`` names the ``ovms_*`` families to expose (``config.DEFAULT_METRICS`` and
    ``config.OPTIONAL_METRICS`` are the known names); ``None`` means OVMS's default list, an empty
    collection none of them (as OVMS's ``"metrics_list": []``). The ``ovserve_*`` families are
    always exposed. Raises ``ValueError`` for an unknown name.
    """

    def __init__(self, registry: CollectorRegistry, enabled: Collection[str] | None = None) -> None:
        names = frozenset(DEFAULT_METRICS if enabled is None else enabled)
        unknown = sorted(names - set(DEFAULT_METRICS) - set(OPTIONAL_METRICS))
        if unknown:
            known = ", ".join((*DEFAULT_METRICS, *OPTIONAL_METRICS))
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} (known: {known})")
        self.enabled: frozenset[str] = names
        self._lock = threading.Lock()
        self._view: ManagerView | None = None
        self._success: dict[_ReqKey, float] | None = {} if REQUESTS_SUCCESS in names else None
        self._fail: dict[_ReqKey, float] | None = {} if REQUESTS_FAIL in names else None
        self._request_time = _histograms(REQUEST_TIME in names)
        self._inference_time = _histograms(INFERENCE_TIME in names)
        self._wait_time = _histograms(WAIT_TIME in names)
        self._reloads = {"success": 0.0, "failure": 0.0}
        registry.register(self)

    # -- called by the http layer, once per request ------------------------------------------

    def observe_request(
        self,
        *,
        api: str,
        method: str,
        name: str,
        version: int | None,
        ok: bool,
        interface: str = "REST",
        duration_us: float | None = None,
    ) -> None:
        """Count one request; ``duration_us`` (inference requests) feeds ovms_request_time_us.

        GetModelStatus and ModelReady carry no version label (the given version is ignored);
        any other method is counted only with the version that served it, so a request that
        never resolved a version is not counted. A failure is counted only for a model (and
        version) the bound manager tracks.
        """
        if method in _UNVERSIONED:
            version = None
        elif version is None:
            return
        counter = self._success if ok else self._fail
        times = self._request_time if version is not None else None
        if counter is None and (times is None or duration_us is None):
            return
        if not ok and not self._tracked(name, version):
            return
        with self._lock:
            if counter is not None:
                key = (api, interface, method, name, version)
                counter[key] = counter.get(key, 0.0) + 1.0
            if times is not None and version is not None and duration_us is not None:
                _observe(times, (interface, name, version), duration_us)

    def observe_inference(
        self, *, name: str, version: int, infer_us: float, wait_us: float
    ) -> None:
        """Feed ovms_inference_time_us and ovms_wait_for_infer_req_time_us for one inference."""
        key = (name, version)
        with self._lock:
            if self._inference_time is not None:
                _observe(self._inference_time, key, infer_us)
            if self._wait_time is not None:
                _observe(self._wait_time, key, wait_us)

    def observe_reload(self, *, ok: bool) -> None:
        """Count one ``POST /v1/config/reload`` by result."""
        with self._lock:
            self._reloads["success" if ok else "failure"] += 1.0

    def bind(self, view: ManagerView) -> None:
        """Read the scrape-time gauges from ``view`` (the ModelManager) from now on."""
        self._view = view

    def _tracked(self, name: str, version: int | None) -> bool:
        view = self._view
        if view is None:
            return True
        statuses = view.all_statuses().get(name)
        if statuses is None:
            return False
        return version is None or any(s.version == version for s in statuses)

    # -- prometheus_client Collector -----------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The families this collector yields, without samples (for the registry's name check)."""
        yield from self._families(_Snapshot(), [], None)

    def collect(self) -> Iterator[Metric]:
        """Render every enabled family: stored series, zero series for loaded versions, gauges."""
        with self._lock:
            snap = _Snapshot(
                success=None if self._success is None else dict(self._success),
                fail=None if self._fail is None else dict(self._fail),
                request_time=_copy(self._request_time),
                inference_time=_copy(self._inference_time),
                wait_time=_copy(self._wait_time),
                reloads=dict(self._reloads),
            )
        view = self._view
        loaded = list(view.loaded()) if view is not None else []
        for served in loaded:
            snap.add_zero_series(served.name, served.version)
        yield from self._families(snap, loaded, view)

    def _families(
        self, snap: _Snapshot, loaded: Sequence[ServedModelLike], view: ManagerView | None
    ) -> Iterator[Metric]:
        for name in _ORDER:
            if name not in self.enabled:
                continue
            if name == REQUESTS_SUCCESS:
                yield _requests_family(name, snap.success or {})
            elif name == REQUESTS_FAIL:
                yield _requests_family(name, snap.fail or {})
            elif name == REQUEST_TIME:
                yield _histogram_family(name, snap.request_time or {})
            elif name == INFERENCE_TIME:
                yield _histogram_family(name, snap.inference_time or {})
            elif name == WAIT_TIME:
                yield _histogram_family(name, snap.wait_time or {})
            else:
                yield _gauge_family(name, loaded, view)
        yield _state_family(view.all_statuses() if view is not None else {})
        info = GaugeMetricFamily(CONFIG_INFO, HELP[CONFIG_INFO], labels=["config_hash"])
        digest = view.config_hash if view is not None else None
        if digest:
            info.add_metric([digest], 1.0)
        yield info
        reloads = CounterMetricFamily(CONFIG_RELOADS, HELP[CONFIG_RELOADS], labels=["result"])
        for result in ("success", "failure"):
            reloads.add_metric([result], snap.reloads.get(result, 0.0))
        yield reloads


class _Snapshot:
    """A copy of the stored series taken under the lock; scrape-time zero series go here."""

    def __init__(
        self,
        success: dict[_ReqKey, float] | None = None,
        fail: dict[_ReqKey, float] | None = None,
        request_time: dict[_HistKey, _Histogram] | None = None,
        inference_time: dict[_HistKey, _Histogram] | None = None,
        wait_time: dict[_HistKey, _Histogram] | None = None,
        reloads: dict[str, float] | None = None,
    ) -> None:
        self.success = success
        self.fail = fail
        self.request_time = request_time
        self.inference_time = inference_time
        self.wait_time = wait_time
        self.reloads = reloads or {}

    def add_zero_series(self, name: str, version: int) -> None:
        """The REST series OVMS creates, at 0, when a version loads."""
        for api, method in _PRESET:
            key = (api, "REST", method, name, None if method in _UNVERSIONED else version)
            for counter in (self.success, self.fail):
                if counter is not None:
                    counter.setdefault(key, 0.0)
        hists = (
            (self.request_time, ("REST", name, version)),
            (self.inference_time, (name, version)),
            (self.wait_time, (name, version)),
        )
        for store, hkey in hists:
            if store is not None and hkey not in store:
                store[hkey] = _Histogram()


# -- family builders ---------------------------------------------------------------------------

_LABELS: dict[str, list[str]] = {
    REQUEST_TIME: ["interface", "name", "version"],
    INFERENCE_TIME: ["name", "version"],
    WAIT_TIME: ["name", "version"],
}


def _gauge_family(name: str, loaded: Sequence[ServedModelLike], view: ManagerView | None) -> Metric:
    family = GaugeMetricFamily(name, HELP[name], labels=["name", "version"])
    for served in sorted(loaded, key=lambda s: (s.name, s.version)):
        model = served.model
        if name == STREAMS:
            value = model.streams
        elif name == QUEUE_SIZE:
            value = model.nireq
        elif name == REQ_ACTIVE:
            value = model.active_requests
        else:  # CURRENT_REQUESTS
            value = view.in_flight(served.name, served.version) if view is not None else 0
        family.add_metric([served.name, str(served.version)], float(value))
    return family


def _requests_family(name: str, store: Mapping[_ReqKey, float]) -> Metric:
    family = Metric(name, HELP[name], "counter")
    family.type = _OVMS_COUNTER
    for key in sorted(store, key=_req_order):
        api, interface, method, model, version = key
        labels = {"api": api, "interface": interface, "method": method, "name": model}
        if version is not None:
            labels["version"] = str(version)
        family.add_sample(name, labels, store[key])
    return family


def _histogram_family(name: str, store: Mapping[_HistKey, _Histogram]) -> Metric:
    family = HistogramMetricFamily(name, HELP[name], labels=_LABELS[name])
    for key in sorted(store):
        hist = store[key]
        cumulative, buckets = 0, []
        for le, count in zip(_LE, hist.counts, strict=True):
            cumulative += count
            buckets.append((le, float(cumulative)))
        family.add_metric([str(v) for v in key], buckets, hist.total)
    return family


def _state_family(all_statuses: Mapping[str, Sequence[VersionStatus]]) -> Metric:
    family = GaugeMetricFamily(
        VERSION_STATE, HELP[VERSION_STATE], labels=["name", "version", "state"]
    )
    for name, statuses in sorted(all_statuses.items()):
        for status in sorted(statuses, key=lambda s: s.version):
            current = "FAILED" if status.failed else status.state.name
            for state in STATE_LABELS:
                value = 1.0 if state == current else 0.0
                family.add_metric([name, str(status.version), state], value)
    return family


def _req_order(key: _ReqKey) -> tuple[str, str, str, str, int]:
    api, interface, method, name, version = key
    return api, interface, method, name, -1 if version is None else version


def _observe(store: dict[_HistKey, _Histogram], key: _HistKey, value: float) -> None:
    hist = store.get(key)
    if hist is None:
        hist = store[key] = _Histogram()
    hist.observe(value)


def _histograms(enabled: bool) -> dict[_HistKey, _Histogram] | None:
    return {} if enabled else None


def _copy(store: dict[_HistKey, _Histogram] | None) -> dict[_HistKey, _Histogram] | None:
    return None if store is None else {k: h.copy() for k, h in store.items()}
