"""kopf wiring, and nothing else: the only module of ovserve that imports kopf.

:func:`build_registry` registers every handler on a fresh ``kopf.OperatorRegistry`` (no
module-level registration, so tests and the CLI each get their own), and :func:`run` starts
kopf with it; ``ovserve-operator`` (:mod:`ovserve.operator.cli`) calls :func:`run`.

Handlers (trigger -> what it does):

* InferenceModel created, changed or resumed -> reconcile its server (and the previous one when
  ``spec.server`` moved);
* InferenceModel deleted (finalizer ``ovserve.io/finalizer``) -> reconcile its server without
  it and wait for the pods;
* InferenceServer created, changed or resumed -> reconcile it;
* InferenceServer deleted (its children go with their ownerReferences) -> mark its models
  Pending; kopf puts the same finalizer on every InferenceServer because of the timer below,
  so this runs before the object goes (the chart's pre-delete hook relies on it);
* a timer on every InferenceServer -> reconcile it (new pods, restarts, deleted children,
  fresh status).

"Not yet" is ``kopf.TemporaryError(delay=…)`` (never a sleep), a spec the operator refuses is
``kopf.PermanentError`` plus a warning Event and a status message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from .kube import KubeError
from .reconcile import Outcome, Reconciler, Settings, model_server_name
from .reload import HttpPodClient
from .resources import GROUP, MODEL_PLURAL, SERVER_PLURAL, VERSION, ModelSpec, SpecError

log = logging.getLogger("ovserve.operator")

FINALIZER = "ovserve.io/finalizer"
STORAGE_PREFIX = "operator.ovserve.io"


@dataclass(frozen=True)
class RunOptions:
    """How to run the operator; built by the CLI from its flags."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness_endpoint: str | None = None
    events: bool = True  # post Kubernetes Events (tests against a stand-in API turn it off)
    log_level: str = "INFO"
    settings: Settings = field(default_factory=Settings)


def _raise_for(outcome: Outcome) -> None:
    retry = outcome.retry
    if retry is not None:
        raise kopf.TemporaryError(retry.reason, delay=retry.delay)


@contextlib.contextmanager
def _api_errors(delay: float) -> Iterator[None]:
    """A failed API call is "not yet": retry soon instead of kopf's long default back-off."""
    try:
        yield
    except KubeError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=delay) from exc


def _elapsed(runtime: Any) -> float:
    seconds = getattr(runtime, "total_seconds", None)
    return float(seconds()) if callable(seconds) else 0.0


def _reconciler(memo: Any) -> Reconciler:
    reconciler = memo.get("reconciler")
    if not isinstance(reconciler, Reconciler):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return reconciler


def build_registry(options: RunOptions,
                   make_reconciler: Callable[[], Reconciler] | None = None
                   ) -> kopf.OperatorRegistry:
    """A registry with every ovserve handler; ``make_reconciler`` defaults to the real API."""
    registry = kopf.OperatorRegistry()
    settings = options.settings

    def default_reconciler() -> Reconciler:
        from .kube import KubernetesApi

        return Reconciler(KubernetesApi.from_environment(),
                          HttpPodClient(timeout=settings.http_timeout), settings)

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
        memo["reconciler"] = factory()

    @kopf.on.cleanup(id="cleanup", registry=registry)
    def cleanup(memo: kopf.Memo, **_: Any) -> None:
        reconciler = memo.get("reconciler")
        close = getattr(getattr(reconciler, "api", None), "close", None)
        if callable(close):
            close()

    @kopf.on.probe(id="reconciler", registry=registry)
    def probe(memo: kopf.Memo, **_: Any) -> bool:
        return isinstance(memo.get("reconciler"), Reconciler)

    def decode_model(body: kopf.Body, reconciler: Reconciler) -> ModelSpec:
        try:
            return ModelSpec.from_body(body)
        except SpecError as exc:
            reconciler.model_invalid(body, str(exc))
            kopf.warn(body, reason="InvalidSpec", message=str(exc))
            # A model that was valid before leaves its server's config.
            ns = str(body["metadata"]["namespace"])
            reconciler.reconcile_server(ns, model_server_name(body))
            raise kopf.PermanentError(str(exc)) from None

    @kopf.on.resume(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    @kopf.on.create(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    @kopf.on.update(GROUP, VERSION, MODEL_PLURAL, id="model", registry=registry)
    def model_changed(body: kopf.Body, old: Any, retry: int, runtime: Any, memo: kopf.Memo,
                      **_: Any) -> None:
        reconciler = _reconciler(memo)
        with _api_errors(settings.max_retry_delay):
            model = decode_model(body, reconciler)
            if isinstance(old, Mapping):
                previous = model_server_name(old)
                if previous != model.server:
                    reconciler.reconcile_server(model.namespace, previous)
            outcome = reconciler.reconcile_server(model.namespace, model.server, retry,
                                                  _elapsed(runtime))
        _raise_for(outcome)

    @kopf.on.delete(GROUP, VERSION, MODEL_PLURAL, id="model-deleted", registry=registry)
    def model_deleted(body: kopf.Body, retry: int, runtime: Any, memo: kopf.Memo,
                      **_: Any) -> None:
        reconciler = _reconciler(memo)
        namespace = str(body["metadata"]["namespace"])
        # No ready pod means nothing to unload: the model leaves at once.
        with _api_errors(settings.max_retry_delay):
            outcome = reconciler.reconcile_server(namespace, model_server_name(body), retry,
                                                  _elapsed(runtime), wait_for_pods=False)
        _raise_for(outcome)

    @kopf.on.resume(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    @kopf.on.create(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    @kopf.on.update(GROUP, VERSION, SERVER_PLURAL, id="server", registry=registry)
    def server_changed(body: kopf.Body, retry: int, runtime: Any, memo: kopf.Memo,
                       **_: Any) -> None:
        reconciler = _reconciler(memo)
        meta = body["metadata"]
        with _api_errors(settings.max_retry_delay):
            outcome = reconciler.reconcile_server(str(meta["namespace"]), str(meta["name"]),
                                                  retry, _elapsed(runtime))
        if outcome.server_error:
            kopf.warn(body, reason="InvalidSpec", message=outcome.server_error)
            raise kopf.PermanentError(outcome.server_error)
        _raise_for(outcome)

    @kopf.on.delete(GROUP, VERSION, SERVER_PLURAL, id="server-deleted", optional=True,
                    registry=registry)
    def server_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        meta = body["metadata"]
        with _api_errors(settings.max_retry_delay):
            _reconciler(memo).reconcile_server(str(meta["namespace"]), str(meta["name"]))

    @kopf.timer(GROUP, VERSION, SERVER_PLURAL, id="refresh", interval=settings.status_interval,
                initial_delay=settings.status_interval, registry=registry)
    def refresh(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        meta = body["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            _reconciler(memo).reconcile_server(str(meta["namespace"]), str(meta["name"]))
        except Exception:  # the next tick tries again; never let the timer back off for long
            log.exception("Periodic refresh of InferenceServer %s/%s failed",
                          meta["namespace"], meta["name"])

    return registry


def run(options: RunOptions, make_reconciler: Callable[[], Reconciler] | None = None,
        stop_flag: Any = None, ready_flag: Any = None) -> None:
    """Run kopf until SIGINT/SIGTERM (or ``stop_flag``); blocks."""
    namespaces: Sequence[str] = options.namespaces
    debug = options.log_level == "DEBUG"
    kopf.configure(debug=debug, verbose=debug, quiet=options.log_level in ("WARNING", "ERROR"))
    logging.getLogger().setLevel(options.log_level)
    kopf.run(
        registry=build_registry(options, make_reconciler),
        standalone=True,
        clusterwide=options.all_namespaces,
        namespaces=() if options.all_namespaces else tuple(namespaces),
        liveness_endpoint=options.liveness_endpoint,
        memo=kopf.Memo(),
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )
