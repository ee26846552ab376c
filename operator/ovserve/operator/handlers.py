"""kopf wiring, and nothing else: the only module of ovserve that imports kopf.

:func:`build_registry` registers every handler on a fresh ``kopf.OperatorRegistry`` (no
module-level registration, so tests and the CLI each get their own), and :func:`run` starts
kopf with it; ``ovserve-operator`` (:mod:`ovserve.operator.cli`) calls :func:`run`.

No handler reconciles by itself: each one asks the :class:`~ovserve.operator.scheduler.Scheduler`
for a pass of its server (one pass per server at a time, requests coalesced, retries on the
scheduler's timer). Handlers (trigger -> what it asks for):

* InferenceModel created, changed or resumed -> a pass of its server (and of the previous one
  when ``spec.server`` moved);
* InferenceModel deleted (finalizer ``ovserve.io/finalizer``) -> a pass of its server, then it
  waits until a pass converged (the pods dropped the model), there is no ready pod, or the
  operator gave up;
* InferenceServer created, changed or resumed -> a pass;
* InferenceServer deleted (its children go with their ownerReferences) -> a pass, which marks
  its models Pending; kopf puts the same finalizer on every InferenceServer because of the
  timer below, so this runs before the object goes (the chart's pre-delete hook relies on it);
* a server pod (label ``app.kubernetes.io/name=ovserve-server``) added, deleted, or changed
  its readiness, IP or phase -> a pass of its server at once (our own nudge annotations do not
  count), so a model is Available as soon as its pods are Ready;
* a timer on every InferenceServer (``--status-interval``) -> a pass (fresh status, time-outs).

A spec the operator refuses is ``kopf.PermanentError`` plus a warning Event and a status
message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from .metrics import OperatorMetrics
from .reconcile import Reconciler, Settings, model_server_name
from .reload import HttpPodClient
from .resources import (
    GROUP,
    MODEL_PLURAL,
    SERVER_PLURAL,
    VERSION,
    ModelSpec,
    ServerSpec,
    SpecError,
)
from .scheduler import Key, Scheduler

log = logging.getLogger("ovserve.operator")

FINALIZER = "ovserve.io/finalizer"
STORAGE_PREFIX = "operator.ovserve.io"
POD_LABELS = {"app.kubernetes.io/name": "ovserve-server"}  # render.selector_labels' constant
POD_SERVER_LABEL = "app.kubernetes.io/instance"


@dataclass(frozen=True)
class RunOptions:
    """How to run the operator; built by the CLI from its flags."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness_endpoint: str | None = None
    events: bool = True  # post Kubernetes Events (tests against a stand-in API turn it off)
    log_level: str = "INFO"
    log_format: str = "text"  # text | json (kopf's JSON log lines)
    metrics_port: int = 0  # 0: no metrics endpoint
    metrics_host: str = "0.0.0.0"
    max_parallel: int = 4  # passes of different servers at once
    settings: Settings = field(default_factory=Settings)


def _scheduler(memo: Any) -> Scheduler:
    scheduler = memo.get("scheduler")
    if not isinstance(scheduler, Scheduler):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return scheduler


def _reconciler(memo: Any) -> Reconciler:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return reconciler


def _key(body: Mapping[str, Any], server: str | None = None) -> Key:
    meta = body["metadata"]
    return str(meta["namespace"]), server if server is not None else str(meta["name"])


def pod_fingerprint(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a pod matters to the reconciler: readiness, IP, phase, termination."""
    st = body.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in st.get("conditions") or [] if isinstance(c, Mapping))
    meta = body.get("metadata") or {}
    return (ready, st.get("podIP"), st.get("phase"), bool(meta.get("deletionTimestamp")))


def build_registry(options: RunOptions,
                   make_reconciler: Callable[[], Reconciler] | None = None,
                   metrics: OperatorMetrics | None = None) -> kopf.OperatorRegistry:
    """A registry with every ovserve handler; ``make_reconciler`` defaults to the real API."""
    registry = kopf.OperatorRegistry()
    settings = options.settings
    seen_pods: dict[tuple[str, str], tuple[Any, ...]] = {}  # one entry per live server pod

    def default_reconciler() -> Reconciler:
        from .kube import KubernetesApi

        return Reconciler(KubernetesApi.from_environment(),
                          HttpPodClient(timeout=settings.http_timeout,
                                        connect_timeout=settings.connect_timeout), settings)

    factory = make_reconciler or default_reconciler

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(id="startup", registry=registry)
    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.enabled = options.events
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=STORAGE_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=STORAGE_PREFIX)
        # Least privilege: no cluster-wide watching of CRDs and namespaces.
        settings.scanning.disabled = True
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        # Server-side filtering: the API server streams only the ovserve server pods, not every
        # pod of the watched namespaces (the handler's own label filter stays as a guard).
        settings.watching.label_selectors["v1", "pods"] = ",".join(
            f"{k}={v}" for k, v in sorted(POD_LABELS.items()))
        reconciler = factory()
        memo["reconciler"] = reconciler
        memo["scheduler"] = Scheduler(reconciler.reconcile_server,
                                      max_parallel=options.max_parallel,
                                      error_delay=options.settings.max_retry_delay,
                                      metrics=metrics)

    @kopf.on.cleanup(id="cleanup", registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        scheduler = memo.get("scheduler")
        if isinstance(scheduler, Scheduler):
            scheduler.close()  # on the event loop: it cancels the scheduler's tasks and timers
        reconciler = memo.get("reconciler")
        close = getattr(getattr(reconciler, "api", None), "close", None)
        if callable(close):
            close()

    @kopf.on.probe(id="reconciler", registry=registry)
    def probe(memo: kopf.Memo, **_: Any) -> bool:
        return isinstance(memo.get("reconciler"), Reconciler)

    @kopf.on.resume(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    @kopf.on.create(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    @kopf.on.update(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    async def model_changed(body: kopf.Body, old: Any, memo: kopf.Memo, **_: Any) -> None:
        scheduler = _scheduler(memo)
        if isinstance(old, Mapping):
            previous = model_server_name(old)
            if previous != model_server_name(body):
                scheduler.kick(_key(body, previous), "a model moved away")
        scheduler.kick(_key(body, model_server_name(body)), "a model changed")
        try:
            ModelSpec.from_body(body)
        except SpecError as exc:
            # A model that was valid before leaves its server's config (the pass above).
            await asyncio.get_running_loop().run_in_executor(
                None, _reconciler(memo).model_invalid, body, str(exc))
            kopf.warn(body, reason="InvalidSpec", message=str(exc))
            raise kopf.PermanentError(str(exc)) from None

    @kopf.on.delete(GROUP, VERSION, MODEL_PLURAL, id="model-deleted", registry=registry)
    async def model_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        scheduler = _scheduler(memo)
        key = _key(body, model_server_name(body))
        try:
            outcome = await scheduler.wait(key)
            # Wait for the scheduler's own retries (no extra kicks) until the pods dropped the
            # model, none is ready, or the operator gave up (--reload-timeout).
            while outcome.retry is not None:
                outcome = await scheduler.wait_next(key)
        except Exception as exc:
            raise kopf.TemporaryError(f"reconciling {key[0]}/{key[1]}: {exc}",
                                      delay=settings.max_retry_delay) from exc

    @kopf.on.resume(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    @kopf.on.create(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    @kopf.on.update(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    async def server_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _scheduler(memo).kick(_key(body), "the server changed")
        try:
            ServerSpec.from_body(body)
        except SpecError as exc:
            kopf.warn(body, reason="InvalidSpec", message=str(exc))
            raise kopf.PermanentError(str(exc)) from None

    @kopf.on.delete(GROUP, VERSION, SERVER_PLURAL, id="server-deleted", optional=True,
                    registry=registry)
    async def server_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        _scheduler(memo).kick(_key(body), "the server was deleted")

    @kopf.on.event("v1", "pods", id="pods", labels=POD_LABELS, registry=registry)
    async def pod_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo,
                        **_: Any) -> None:
        meta = body.get("metadata") or {}
        server = (meta.get("labels") or {}).get(POD_SERVER_LABEL)
        scheduler = memo.get("scheduler")
        if not server or not isinstance(scheduler, Scheduler):
            return
        pod = (str(meta.get("namespace")), str(meta.get("name")))
        if event.get("type") == "DELETED":
            seen_pods.pop(pod, None)
        else:
            fingerprint = pod_fingerprint(body)
            if seen_pods.get(pod) == fingerprint:
                return  # e.g. our own nudge annotation
            seen_pods[pod] = fingerprint
        scheduler.kick((pod[0], str(server)), f"pod {pod[1]} changed")

    @kopf.timer(GROUP, VERSION, SERVER_PLURAL, id="refresh", interval=settings.status_interval,
                initial_delay=settings.status_interval, registry=registry)
    async def refresh(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        scheduler = memo.get("scheduler")
        if isinstance(scheduler, Scheduler) and not scheduler.pending(_key(body)):
            scheduler.kick(_key(body), "refresh")

    return registry


def run(options: RunOptions, make_reconciler: Callable[[], Reconciler] | None = None,
        stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run kopf until SIGINT/SIGTERM (or ``stop_flag``); blocks."""
    namespaces: Sequence[str] = options.namespaces
    debug = options.log_level == "DEBUG"
    log_format = kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(debug=debug, verbose=debug, quiet=options.log_level in ("WARNING", "ERROR"),
                   log_format=log_format)
    logging.getLogger().setLevel(options.log_level)
    metrics = OperatorMetrics()
    if options.metrics_port:
        metrics.serve(options.metrics_port, options.metrics_host)
    kopf.run(
        registry=build_registry(options, make_reconciler, metrics),
        standalone=True,
        clusterwide=options.all_namespaces,
        namespaces=() if options.all_namespaces else tuple(namespaces),
        liveness_endpoint=options.liveness_endpoint,
        memo=kopf.Memo(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
