"""One reconciliation pass of an InferenceServer: decode, render, apply, reload, write status.

:mod:`ovserve.operator.handlers` calls :meth:`Reconciler.reconcile_server` from every handler
(model created/changed/deleted, server created/changed, the periodic timer) and turns the
returned :class:`Outcome` into kopf's vocabulary: a :class:`~ovserve.operator.reload.Retry`
becomes ``kopf.TemporaryError(delay=…)``. This module never imports kopf and never sleeps; it
reaches the API only through :class:`~ovserve.operator.kube.KubeApi` and the pods only through
:class:`~ovserve.operator.reload.PodClient`, so unit tests drive it with fakes.

The pass, for server ``s`` in namespace ``ns`` (the whole pass runs under the server's lock,
and :mod:`ovserve.operator.scheduler` runs at most one pass per server at a time anyway):

1. read ``s``; if it is missing or being deleted, every model naming it becomes ``Pending``;
   if its spec is invalid, its models show what its pods still serve (read-only) and say so;
2. decode every InferenceModel of ``ns`` whose ``spec.server`` is ``s`` (invalid ones are left
   out; their own handler reports them), resolve clashing model names (:func:`resolve_names`),
   render, and apply ConfigMap, Deployment and Service;
3. handshake with every ready pod (:mod:`ovserve.operator.reload`); nudge stale pods with the
   annotations ``ovserve.io/config-hash``, ``ovserve.io/config-nudged-at`` (first nudge for that
   hash, epoch seconds) and ``ovserve.io/config-nudge`` (a counter, so each retry updates the
   pod and the kubelet resyncs it again);
4. fold the pods' reports into each model's status and the server's status; write only what
   changed.

The reconciler keeps two small bounded memories per server: the per-model config entries of
the last :data:`ENTRY_HISTORY` configs it rendered (so a pod still on an older config counts for
every model whose entry did not change, see :mod:`ovserve.operator.status`), kept in memory and
in the ConfigMap's ``ovserve.io/model-entries`` annotation (at most :data:`ENTRIES_MAX_BYTES`),
which a restarted operator reads back once per server; and when the current desired state was
first seen unconverged (the clock for ``--reload-timeout``, and the retry count for the
back-off), which restarts empty with the operator.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import render, status
from .kube import KubeApi
from .reload import (
    Converged,
    GaveUp,
    HandshakeResult,
    PodClient,
    PodReport,
    PodTarget,
    Retry,
    Step,
    handshake,
    next_step,
    read_pod,
)
from .resources import (
    DEFAULT_IMAGE,
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
ENTRY_HISTORY = 16  # rendered configs remembered per server (their per-model entries)
ENTRIES_ANNOTATION = "ovserve.io/model-entries"  # that memory, on the ConfigMap (restarts)
ENTRIES_MAX_BYTES = 64 * 1024  # the annotation's size limit; oldest configs are dropped first


@dataclass(frozen=True)
class Settings:
    """Tunables, set from the command line (``ovserve-operator --help``)."""

    reload_timeout: float = 180.0  # give up waiting for a pod/model after this long
    retry_delay: float = 1.0  # first retry delay; doubles per retry
    max_retry_delay: float = 15.0
    http_timeout: float = 60.0  # per call to a pod (a reload waits for model loads)
    connect_timeout: float = 5.0  # opening the TCP connection to a pod
    status_interval: float = 30.0  # the timer that keeps status fresh
    server_image: str = DEFAULT_IMAGE  # for InferenceServers with no spec.image


def resolve_names(models: Sequence[ModelSpec], holders: Mapping[str, str]
                  ) -> tuple[list[ModelSpec], dict[str, str]]:
    """Keep one InferenceModel per model name; the others get a rejection message.

    ``holders`` maps a model name to the InferenceModel (object name) that holds it now (its
    status says it is in the rendered config). The winner of a name is: the holder, if it
    still asks for the name; else the oldest ``metadata.creationTimestamp``; a tie (same
    second) goes to the lexically first object name. Objects of one server share a
    namespace, so this is namespace/name order, and it is the same after a restart.
    """
    winners: dict[str, ModelSpec] = {}
    for model in sorted(models, key=lambda m: (holders.get(m.model_name) != m.name,
                                               m.created, m.name)):
        if model.deleting:
            continue
        winners.setdefault(model.model_name, model)
    rejected = {
        m.name: (f"model name {m.model_name!r} is already served by InferenceModel "
                 f"{winners[m.model_name].name!r} on server {m.server!r}; choose another "
                 "spec.modelName")
        for m in models if not m.deleting and winners[m.model_name] is not m
    }
    return [m for m in models if m.deleting or winners.get(m.model_name) is m], rejected


def holder_of(body: Mapping[str, Any]) -> str | None:
    """The model name an InferenceModel holds according to its own status, if any."""
    st = body.get("status")
    if not isinstance(st, Mapping) or not st.get("configHash") or not st.get("modelName"):
        return None
    for cond in st.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "ConfigApplied" and cond.get(
                "reason") in ("NameConflict", "InvalidSpec", "ServerNotFound"):
            return None
    return str(st["modelName"])


def entry_digest(model: ModelSpec, server: ServerSpec) -> str:
    """A digest of the model's config.json entry (what a pod loads for it); 16 hex digits."""
    entry = json.dumps(model.config_entry(server.mount_path), sort_keys=True)
    return hashlib.sha256(entry.encode()).hexdigest()[:16]


def load_entries(config_map: Mapping[str, Any] | None) -> OrderedDict[str, dict[str, str]]:
    """The per-config model entries a ConfigMap's annotation carries (empty if unreadable)."""
    out: OrderedDict[str, dict[str, str]] = OrderedDict()
    raw = ((_meta(config_map or {}).get("annotations") or {}).get(ENTRIES_ANNOTATION))
    try:
        doc = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return out
    if not isinstance(doc, list):
        return out
    for item in doc[-ENTRY_HISTORY:]:
        if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], dict)):
            out[item[0]] = {str(k): str(v) for k, v in item[1].items()}
    return out


def dump_entries(history: Mapping[str, Mapping[str, str]]) -> str:
    """The annotation's value: ``[[config hash, {model: digest}], …]``, oldest first.

    Oldest configs are left out until it fits :data:`ENTRIES_MAX_BYTES`; the newest always
    stays.
    """
    items = [[digest, dict(entries)] for digest, entries in history.items()]
    text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    while len(text) > ENTRIES_MAX_BYTES and len(items) > 1:
        items.pop(0)
        text = json.dumps(items, sort_keys=True, separators=(",", ":"))
    return text


@dataclass
class _Progress:
    """Since when the desired state of a server is unconverged, and how often it retried."""

    signature: tuple[Any, ...]
    since: float
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    """What one pass did; ``step`` is None when there is nothing to wait for."""

    server: str
    step: Step | None = None
    states: dict[str, str] = field(default_factory=dict)  # InferenceModel name -> state
    server_error: str | None = None
    config_hash: str | None = None
    unreachable: int = 0  # ready pods that gave no HTTP answer

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
    return _target(pod, server.rest_port, server.scheme)


def _target(pod: Mapping[str, Any], port: int, scheme: str) -> PodTarget:
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
        self._entries: dict[tuple[str, str], OrderedDict[str, dict[str, str]]] = {}
        self._progress: dict[tuple[str, str], _Progress] = {}

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
        self._progress.pop((namespace, name), None)
        self._entries.pop((namespace, name), None)
        return Outcome(name, None, states)

    def _ready_pods(self, namespace: str, selector: Mapping[str, str]
                    ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """(existing non-terminating pods of the selector, the ready ones among them)."""
        pods: list[Mapping[str, Any]] = [
            p for p in self.api.list_pods(namespace, selector)
            if all((_meta(p).get("labels") or {}).get(k) == v for k, v in selector.items())
            and not _meta(p).get("deletionTimestamp")
        ]
        return pods, [p for p in pods if _is_ready(p)]

    def _server_invalid(self, namespace: str, name: str, server_body: Mapping[str, Any],
                        error: str) -> Outcome:
        """Models of a server whose spec is refused: show what its pods serve (read-only)."""
        meta = _meta(server_body)
        generation = meta.get("generation")
        selector = render.selector_labels(ServerSpec(name=name, namespace=namespace))
        _, ready = self._ready_pods(namespace, selector)
        # Only pods whose own spec names the REST port can be called without a valid spec.
        targets = [_target(p, 0, "http") for p in ready]
        reports: list[PodReport] = [read_pod(t, self.pods) for t in targets
                                    if not t.url.endswith(":0")]
        now = rfc3339(self.clock())
        _, bodies = self._models_of(namespace, name)
        states = {}
        for model, body in bodies:
            if model.deleting:
                continue
            new = status.served_status(model, name, error, reports, now, body.get("status"))
            self._write(MODEL_PLURAL, body, new)
            states[model.name] = str(new["state"])
        self._write(SERVER_PLURAL, server_body, status.server_invalid_status(
            generation if isinstance(generation, int) else None, error, now,
            server_body.get("status")))
        self._progress.pop((namespace, name), None)
        return Outcome(name, None, states, server_error=error)

    def _remember(self, key: tuple[str, str], server: ServerSpec, rendered: render.Rendered
                  ) -> OrderedDict[str, dict[str, str]]:
        history = self._entries.setdefault(key, OrderedDict())
        history[rendered.config_hash] = {m.model_name: entry_digest(m, server)
                                         for m in rendered.models}
        history.move_to_end(rendered.config_hash)
        while len(history) > ENTRY_HISTORY:
            history.popitem(last=False)
        return history

    def reconcile_server(self, namespace: str, name: str) -> Outcome:
        """Run one pass for server ``namespace/name``; see the module docstring."""
        with self._lock(namespace, name):
            return self._pass(namespace, name)

    def _pass(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        server_body = self.api.get_server(namespace, name)
        if server_body is None or _meta(server_body).get("deletionTimestamp"):
            return self._server_missing(
                namespace, name,
                f"InferenceServer {name!r} not found in namespace {namespace!r}; "
                "the model waits for it")
        try:
            server = ServerSpec.from_body(server_body, self.settings.server_image)
        except SpecError as exc:
            return self._server_invalid(namespace, name, server_body, str(exc))

        models, bodies = self._models_of(namespace, name)
        holders: dict[str, str] = {}
        for model, body in bodies:
            held = holder_of(body)
            if held == model.model_name:
                holders.setdefault(held, model.name)
        kept, rejected = resolve_names(models, holders)
        rendered = render.render_server(server, kept)
        rejected = {**rendered.rejected, **rejected}
        if key not in self._entries:  # first pass since the operator started: read it back
            self._entries[key] = load_entries(self.api.get_config_map(
                namespace, render.config_map_name(name)))
        history = self._remember(key, server, rendered)
        config_map = dict(rendered.config_map)
        meta = dict(config_map["metadata"])
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               ENTRIES_ANNOTATION: dump_entries(history)}
        config_map["metadata"] = meta
        self.api.apply(config_map)
        self.api.apply(rendered.deployment)
        self.api.apply(rendered.service)
        if rendered.pdb is not None:
            self.api.apply(rendered.pdb)
        else:  # replicas down to 1 or the budget switched off: none must be left
            self.api.delete("PodDisruptionBudget", namespace, render.pdb_name(server))

        selector = render.selector_labels(server)
        pods, ready = self._ready_pods(namespace, selector)
        targets = [pod_target(p, server) for p in ready]
        ready_names = {t.name for t in targets}
        pool = status.Pool(replicas=server.replicas, existing=len(pods), ready=len(targets),
                           not_ready=tuple(sorted(str(_meta(p).get("name")) for p in pods
                                                  if _meta(p).get("name") not in ready_names)))
        result = handshake(targets, rendered.config_hash, self.pods)
        now = self.clock()
        self._nudge(namespace, result, targets, now)

        signature = (rendered.config_hash, server.generation, server.replicas)
        progress = self._progress.get(key)
        if progress is None or progress.signature != signature:
            progress = self._progress[key] = _Progress(signature, now)
        elapsed = now - progress.since
        timeout = self.settings.reload_timeout
        step: Step | None
        if targets:
            step = next_step(result, targets, now, progress.attempts, elapsed, timeout,
                             self.settings.retry_delay, self.settings.max_retry_delay)
        else:
            step = None  # pod events start the next pass; the refresh timer checks time-outs
        missing = status.missing_pods(pool) if server.replicas > 0 else None
        if missing and elapsed >= timeout and not isinstance(step, GaveUp):
            step = GaveUp(f"gave up after {timeout:.0f} s: {missing[1]}; the operator checks "
                          "again when the pods change")
        if isinstance(step, Retry):
            progress.attempts += 1
        elif isinstance(step, Converged) and not missing:
            self._progress.pop(key, None)
        gave_up = step.message if isinstance(step, GaveUp) else None
        states = self._write_statuses(server, rendered, rejected, bodies, result, pool, now,
                                      gave_up, history)
        self._write(SERVER_PLURAL, server_body, status.server_status(
            server, render.label_selector(server), pool, len(rendered.models),
            result if targets else None, rfc3339(now), server_body.get("status"), gave_up))
        if isinstance(step, Retry):
            log.info("InferenceServer %s/%s: %s; retrying in %.1f s", namespace, name,
                     step.reason, step.delay)
        elif gave_up:
            log.warning("InferenceServer %s/%s: %s", namespace, name, gave_up)
        blocked = sum(1 for p in result.pods if p.error and p.config_hash is None)
        return Outcome(name, step, states, config_hash=rendered.config_hash,
                       unreachable=blocked)

    def _nudge(self, namespace: str, result: HandshakeResult, targets: Sequence[PodTarget],
               now: float) -> None:
        by_name = {t.name: t for t in targets}
        for report in result.stale:
            if report.config_hash is None and report.error:
                continue  # unreachable: a kubelet resync does not help
            target = by_name[report.name]
            annotations = {NUDGE_HASH: result.expected, NUDGE_COUNT: str(int(now * 1000))}
            if target.nudged_hash != result.expected or target.nudged_at is None:
                annotations[NUDGE_AT] = f"{now:.3f}"
            try:
                self.api.annotate_pod(namespace, report.name, annotations)
            except Exception as exc:  # a pod that went away meanwhile: the next pass sees it
                log.debug("Could not nudge pod %s/%s: %s", namespace, report.name, exc)

    def _write_statuses(self, server: ServerSpec, rendered: render.Rendered,
                        rejected: Mapping[str, str],
                        bodies: Sequence[tuple[ModelSpec, Mapping[str, Any]]],
                        result: HandshakeResult, pool: status.Pool, now: float,
                        gave_up: str | None, history: Mapping[str, Mapping[str, str]]
                        ) -> dict[str, str]:
        states: dict[str, str] = {}
        stamp = rfc3339(now)
        wanted = history.get(rendered.config_hash, {})
        for model, body in bodies:
            if model.deleting:
                continue
            previous = body.get("status")
            if model.name in rejected:
                reason = rendered.reasons.get(model.name, "NameConflict")
                new = status.pending_status(model, reason, rejected[model.name],
                                            stamp, previous, state=status.FAILED)
            else:
                digest = wanted.get(model.model_name)
                unchanged = frozenset(
                    p.name for p in result.stale
                    if p.error is None and p.config_hash is not None and digest is not None
                    and history.get(p.config_hash, {}).get(model.model_name) == digest)
                new = status.model_status(model, server, result, pool, stamp, previous,
                                          gave_up, unchanged)
            self._write(MODEL_PLURAL, body, new)
            states[model.name] = str(new["state"])
        return states
