"""One reconciliation pass of an InferenceServer: decode, render, apply, reload, write status.

:mod:`ovserve.operator.handlers` calls :meth:`Reconciler.reconcile_server` from every handler
(model created/changed/deleted, server created/changed, the periodic timer) and turns the
returned :class:`Outcome` into kopf's vocabulary: a :class:`~ovserve.operator.reload.Retry`
becomes ``kopf.TemporaryError(delay=…)``. This module never imports kopf and never sleeps; it
reaches the API only through :class:`~ovserve.operator.kube.KubeApi` and the pods only through
:class:`~ovserve.operator.reload.PodClient`, so unit tests drive it with fakes.

The pass, for server ``s`` in namespace ``ns``:

1. read ``s``; if it is missing or being deleted, every model naming it becomes ``Pending``;
2. decode every InferenceModel of ``ns`` whose ``spec.server`` is ``s`` (invalid ones are left
   out; their own handler reports them), render, and apply ConfigMap, Deployment and Service
   (steps 1-2 are serialised per server, so concurrent handlers never write an older model
   list last);
3. handshake with every ready pod (:mod:`ovserve.operator.reload`); nudge stale pods with the
   annotations ``ovserve.io/config-hash``, ``ovserve.io/config-nudged-at`` (first nudge for that
   hash, epoch seconds) and ``ovserve.io/config-nudge`` (a counter, so each retry updates the
   pod and the kubelet resyncs it again);
4. fold the pods' reports into each model's status and the server's status; write only what
   changed.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import render, status
from .kube import KubeApi
from .reload import (
    GaveUp,
    HandshakeResult,
    PodClient,
    PodTarget,
    Retry,
    Step,
    handshake,
    next_step,
)
from .resources import (
    DEFAULT_SERVER,
    MODEL_PLURAL,
    SERVER_PLURAL,
    ModelSpec,
    ServerSpec,
    SpecError,
)

log = logging.getLogger("ovserve.operator")

NUDGE_HASH = "ovserve.io/config-hash"
NUDGE_AT = "ovserve.io/config-nudged-at"
NUDGE_COUNT = "ovserve.io/config-nudge"


@dataclass(frozen=True)
class Settings:
    """Tunables, set from the command line (``ovserve-operator --help``)."""

    reload_timeout: float = 180.0  # give up waiting for a pod/model after this long
    retry_delay: float = 1.0  # first retry delay; doubles per retry
    max_retry_delay: float = 15.0
    http_timeout: float = 60.0  # per call to a pod (a reload waits for model loads)
    status_interval: float = 30.0  # the timer that keeps status fresh


@dataclass(frozen=True)
class Outcome:
    """What one pass did; ``step`` is None when there is nothing to wait for."""

    server: str
    step: Step | None = None
    states: dict[str, str] = field(default_factory=dict)  # InferenceModel name -> state
    server_error: str | None = None
    config_hash: str | None = None

    @property
    def retry(self) -> Retry | None:
        return self.step if isinstance(self.step, Retry) else None


def rfc3339(epoch: float) -> str:
    stamp = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).replace(microsecond=0)
    return stamp.isoformat().replace("+00:00", "Z")


def model_server_name(body: Mapping[str, Any]) -> str:
    """``spec.server`` of a raw InferenceModel, with the CRD's default."""
    spec = body.get("spec") or {}
    value = spec.get("server") if isinstance(spec, Mapping) else None
    return value if isinstance(value, str) and value else DEFAULT_SERVER


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _is_ready(pod: Mapping[str, Any]) -> bool:
    st = pod.get("status") or {}
    if not st.get("podIP") or st.get("phase", "Running") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in st.get("conditions") or [])


def pod_target(pod: Mapping[str, Any], server: ServerSpec) -> PodTarget:
    """Where to reach a ready pod: its IP and the port/scheme its own spec declares."""
    port, scheme = server.rest_port, server.scheme
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != render.CONTAINER_NAME:
            continue
        for p in container.get("ports") or []:
            if p.get("name") == render.PORT_NAME and p.get("containerPort"):
                port = int(p["containerPort"])
        probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
        if probe.get("scheme"):
            scheme = str(probe["scheme"]).lower()
    annotations = _meta(pod).get("annotations") or {}
    try:
        nudged_at: float | None = float(annotations[NUDGE_AT])
    except (KeyError, TypeError, ValueError):
        nudged_at = None
    ip = str(pod["status"]["podIP"])
    host = f"[{ip}]" if ":" in ip else ip
    return PodTarget(
        name=str(_meta(pod).get("name")),
        url=f"{scheme}://{host}:{port}",
        nudged_hash=annotations.get(NUDGE_HASH),
        nudged_at=nudged_at,
    )


class Reconciler:
    """Reconciles servers; one instance per operator process (kept in kopf's ``memo``)."""

    def __init__(self, api: KubeApi, pods: PodClient, settings: Settings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.pods = pods
        self.settings = settings or Settings()
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    # -------------------------------------------------------------- status writes

    def _write(self, plural: str, body: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        old = body.get("status") or {}
        if all(old.get(k) == v for k, v in new.items()):
            return
        meta = _meta(body)
        self.api.patch_status(plural, str(meta.get("namespace")), str(meta.get("name")), new)

    def model_invalid(self, body: Mapping[str, Any], error: str) -> None:
        """Write the status of a model whose spec the operator refuses."""
        meta = _meta(body)
        generation = meta.get("generation")
        spec = body.get("spec") if isinstance(body.get("spec"), Mapping) else {}
        name = (spec or {}).get("modelName") or meta.get("name")
        new = status.invalid_status(str(name), generation if isinstance(generation, int) else None,
                                    error, rfc3339(self.clock()), body.get("status"))
        self._write(MODEL_PLURAL, body, new)

    # -------------------------------------------------------------- the pass

    def _models_of(self, namespace: str, server: str
                   ) -> tuple[list[ModelSpec], list[tuple[ModelSpec, Mapping[str, Any]]]]:
        models: list[ModelSpec] = []
        bodies: list[tuple[ModelSpec, Mapping[str, Any]]] = []
        for body in self.api.list_models(namespace):
            if model_server_name(body) != server:
                continue
            try:
                model = ModelSpec.from_body(body)
            except SpecError:
                continue  # reported by the model's own handler
            models.append(model)
            bodies.append((model, body))
        return models, bodies

    def _server_missing(self, namespace: str, name: str, why: str) -> Outcome:
        now = rfc3339(self.clock())
        _, bodies = self._models_of(namespace, name)
        states = {}
        for model, body in bodies:
            if model.deleting:
                continue
            new = status.pending_status(model, "ServerNotFound", why, now, body.get("status"))
            self._write(MODEL_PLURAL, body, new)
            states[model.name] = status.PENDING
        return Outcome(name, None, states)

    def reconcile_server(self, namespace: str, name: str, attempt: int = 0,
                         elapsed: float = 0.0, wait_for_pods: bool = True) -> Outcome:
        """Run one pass for server ``namespace/name``; see the module docstring.

        ``attempt`` and ``elapsed`` come from kopf (retry count, handler runtime);
        ``wait_for_pods=False`` (a model's deletion) does not wait for pods to start.
        """
        # Read, render and apply under the server's lock: a pass that read an older server
        # or model list can never apply it after a pass that read a newer one.
        with self._lock(namespace, name):
            server_body = self.api.get_server(namespace, name)
            if server_body is None or _meta(server_body).get("deletionTimestamp"):
                return self._server_missing(
                    namespace, name,
                    f"InferenceServer {name!r} not found in namespace {namespace!r}; "
                    "the model waits for it")
            try:
                server = ServerSpec.from_body(server_body)
            except SpecError as exc:
                outcome = self._server_missing(namespace, name,
                                               f"InferenceServer {name!r} is invalid: {exc}")
                self._write(SERVER_PLURAL, server_body, {
                    "message": f"invalid spec: {exc}", "configHash": "", "models": 0})
                return Outcome(name, None, outcome.states, server_error=str(exc))

            models, bodies = self._models_of(namespace, name)
            rendered = render.render_server(server, models)
            self.api.apply(rendered.config_map)
            self.api.apply(rendered.deployment)
            self.api.apply(rendered.service)

        selector = render.selector_labels(server)
        pods = [
            p for p in self.api.list_pods(namespace, selector)
            if all((_meta(p).get("labels") or {}).get(k) == v for k, v in selector.items())
            and not _meta(p).get("deletionTimestamp")
        ]
        targets = [pod_target(p, server) for p in pods if _is_ready(p)]
        pool = status.Pool(replicas=server.replicas, existing=len(pods), ready=len(targets))
        result = handshake(targets, rendered.config_hash, self.pods)
        now = self.clock()
        self._nudge(namespace, result, targets, now)

        step: Step | None
        if targets:
            step = next_step(result, targets, now, attempt, elapsed, self.settings.reload_timeout,
                             self.settings.retry_delay, self.settings.max_retry_delay)
        elif wait_for_pods and server.replicas > 0 and elapsed < self.settings.reload_timeout:
            step = Retry(self.settings.max_retry_delay, "waiting for a ready pod")
        else:
            step = None
        gave_up = step.message if isinstance(step, GaveUp) else None
        states = self._write_statuses(server, rendered, bodies, result, pool, now, gave_up)
        self._write(SERVER_PLURAL, server_body, status.server_status(
            server, render.label_selector(server), pool, len(rendered.models),
            result if targets else None, rfc3339(now), server_body.get("status"), gave_up))
        if isinstance(step, Retry):
            log.info("InferenceServer %s/%s: %s; retrying in %.1f s", namespace, name,
                     step.reason, step.delay)
        elif gave_up:
            log.warning("InferenceServer %s/%s: %s", namespace, name, gave_up)
        return Outcome(name, step, states, config_hash=rendered.config_hash)

    def _nudge(self, namespace: str, result: HandshakeResult, targets: Sequence[PodTarget],
               now: float) -> None:
        by_name = {t.name: t for t in targets}
        for report in result.stale:
            target = by_name[report.name]
            annotations = {NUDGE_HASH: result.expected, NUDGE_COUNT: str(int(now * 1000))}
            if target.nudged_hash != result.expected or target.nudged_at is None:
                annotations[NUDGE_AT] = f"{now:.3f}"
            try:
                self.api.annotate_pod(namespace, report.name, annotations)
            except Exception as exc:  # a pod that went away meanwhile: the next pass sees it
                log.debug("Could not nudge pod %s/%s: %s", namespace, report.name, exc)

    def _write_statuses(self, server: ServerSpec, rendered: render.Rendered,
                        bodies: Sequence[tuple[ModelSpec, Mapping[str, Any]]],
                        result: HandshakeResult, pool: status.Pool, now: float,
                        gave_up: str | None) -> dict[str, str]:
        states: dict[str, str] = {}
        stamp = rfc3339(now)
        for model, body in bodies:
            if model.deleting:
                continue
            previous = body.get("status")
            if model.name in rendered.rejected:
                reason = rendered.reasons.get(model.name, "NameConflict")
                new = status.pending_status(model, reason, rendered.rejected[model.name],
                                            stamp, previous, state=status.FAILED)
            else:
                new = status.model_status(model, server, result, pool, stamp, previous, gave_up)
            self._write(MODEL_PLURAL, body, new)
            states[model.name] = str(new["state"])
        return states
