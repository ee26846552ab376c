"""Fold what the pods report into InferenceModel and InferenceServer ``status``. Pure.

:mod:`ovserve.operator.reconcile` calls :func:`model_status` for every model of a server after
each handshake (and :func:`pending_status` / :func:`invalid_status` when there is nothing to
fold), then :func:`server_status`. The clock comes in as ``now`` (RFC 3339 text), and a
condition's ``lastTransitionTime`` only moves when its status changes.

An InferenceModel served by 2 of 3 pods while the third still loads::

    status:
      state: Loading                  # Pending | Loading | Available | Failed
      modelName: resnet
      availableVersions: "1"          # AVAILABLE on every pod that applied the config
      readyPods: 2/3                  # pods serving >= 1 version / spec.replicas of the server
      versions:
        - {version: 1, state: LOADING, availablePods: 2}
      configHash: 5f0c…               # hash of the config that includes this spec
      message: version 1 is LOADING on pod default-7d9-x2
      observedGeneration: 3           # the last generation with a known outcome
      conditions:
        - {type: Ready, status: "False", reason: Loading, message: …}
        - {type: Reconciling, status: "True", reason: Loading, message: …}
        - {type: Stalled, status: "False", reason: Loading, message: …}
        - {type: ConfigApplied, status: "True", reason: Applied, message: …}

**READY and STATE.** A pod counts for a model when the config it has applied carries *this
model's* entry as currently rendered: the pods that report the new config hash, plus pods still
on an older config whose entry for this model is the same (the reconciler remembers the
per-model entries of the configs it rendered, see ``unchanged``). So a config that adds or
changes *another* model leaves an unchanged model ``Available`` with its full ``readyPods``
while the pods pick the new config up; only a change of this model's own entry makes it
``Loading`` until the pods load it.

**kstatus.** Both kinds carry the conditions kstatus (kubectl wait, Helm's ``--wait``, Flux,
Argo CD) reads: ``Reconciling`` is True while work is pending, ``Stalled`` is True when the
object failed or the operator gave up waiting, ``Ready`` is True when it is done; exactly one of
them is True. ``status.observedGeneration`` moves to ``metadata.generation`` only once the
outcome for that generation is known (Ready or Stalled); while a new generation is worked on it
keeps the previous value, so kstatus reports it as in progress.

A failed load folds to ``state: Failed`` and a version ``state: FAILED`` (OVMS reports it as
``LOADING`` + ``UNKNOWN``) with the server's own error text in ``message`` and
``versions[].errorMessage``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .reload import HandshakeResult, PodReport, VersionReport
from .resources import ModelSpec, ServerSpec

PENDING, LOADING, AVAILABLE, FAILED = "Pending", "Loading", "Available", "Failed"
# Worst first: the folded state of a version across pods is the worst one any pod reports.
_VERSION_ORDER = ("FAILED", "LOADING", "START", "UNLOADING", "END", "AVAILABLE")


@dataclass(frozen=True)
class Pool:
    """The server's pods as the operator saw them."""

    replicas: int  # spec.replicas of the server
    existing: int  # pods that exist and are not terminating
    ready: int  # of those, ready with an IP (the handshake targets)
    not_ready: tuple[str, ...] = ()  # names of the existing pods that are not ready


def condition(ctype: str, ok: bool, reason: str, message: str, now: str,
              previous: Sequence[Mapping[str, Any]] | None, generation: int | None
              ) -> dict[str, Any]:
    status = "True" if ok else "False"
    since = now
    for old in previous or ():
        if old.get("type") == ctype and old.get("status") == status and old.get(
                "lastTransitionTime"):
            since = str(old["lastTransitionTime"])
    cond: dict[str, Any] = {"type": ctype, "status": status, "reason": reason,
                            "message": message, "lastTransitionTime": since}
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def _previous_conditions(previous: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    conds = (previous or {}).get("conditions") or []
    return [c for c in conds if isinstance(c, Mapping)]


def _base(name: str, generation: int | None, state: str, message: str) -> dict[str, Any]:
    """The common fields; ``observedGeneration`` is added by :func:`_kstatus`."""
    return {"state": state, "modelName": name, "message": message}


def _kstatus(out: dict[str, Any], generation: int | None, ready: bool, stalled: bool,
             reason: str, message: str, now: str, prev: Sequence[Mapping[str, Any]],
             previous: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Ready / Reconciling / Stalled (exactly one True) and ``observedGeneration``.

    ``reason`` is the reason of whichever condition is True (and of the False ones too, so a
    ``kubectl describe`` line reads the same); the outcome of ``generation`` is known when the
    object is ready or stalled, and only then does ``observedGeneration`` move to it.
    """
    if ready or stalled:
        if generation is not None:
            out["observedGeneration"] = generation
    else:
        old = (previous or {}).get("observedGeneration")
        if isinstance(old, int):
            out["observedGeneration"] = old
    reconciling = not ready and not stalled
    return [
        condition("Ready", ready, reason, message, now, prev, generation),
        condition("Reconciling", reconciling, reason, message, now, prev, generation),
        condition("Stalled", stalled, reason, message, now, prev, generation),
    ]


def invalid_status(model_name: str, generation: int | None, message: str, now: str,
                   previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Status of a model whose spec the operator refuses (a PermanentError)."""
    prev = _previous_conditions(previous)
    out = _base(model_name, generation, FAILED, message)
    out.update(availableVersions="", readyPods="0/0", versions=[], configHash="")
    out["conditions"] = [
        *_kstatus(out, generation, False, True, "InvalidSpec", message, now, prev, previous),
        condition("ConfigApplied", False, "InvalidSpec", message, now, prev, generation),
    ]
    return out


def pending_status(model: ModelSpec, reason: str, message: str, now: str,
                   previous: Mapping[str, Any] | None = None, state: str = PENDING
                   ) -> dict[str, Any]:
    """Status of a model with nothing to fold yet (missing server, name clash…).

    ``Failed`` (a name clash) is an outcome: Stalled; anything else waits: Reconciling.
    """
    prev = _previous_conditions(previous)
    out = _base(model.model_name, model.generation, state, message)
    out.update(availableVersions="", readyPods="0/0", versions=[], configHash="")
    out["conditions"] = [
        *_kstatus(out, model.generation, False, state == FAILED, reason, message, now, prev,
                  previous),
        condition("ConfigApplied", False, reason, message, now, prev, model.generation),
    ]
    return out


def served_status(model: ModelSpec, server: str, error: str, pods: Sequence[PodReport],
                  now: str, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A model of a server whose spec turned invalid: what its pods still serve.

    The operator cannot render or reload (it has no valid server spec), so it only reads each
    ready pod's ``GET /v1/config``; the model is Stalled (nothing can progress until the server
    is fixed) whatever it serves, and the message says why.
    """
    prev = _previous_conditions(previous)
    name = model.model_name
    listing = [p for p in pods if p.error is None]
    numbers = sorted({v.version for p in listing for v in p.models.get(name, ())})
    versions = [_fold_version(n, [(p.name, next((v for v in p.models.get(name, ())
                                                  if v.version == n), None)) for p in listing])
                for n in numbers]
    serving = [p for p in listing if any(v.state == "AVAILABLE" for v in p.models.get(name, ()))]
    everywhere = [v["version"] for v in versions if v["availablePods"] == len(listing) > 0]
    state = AVAILABLE if serving else PENDING
    served = (f"its pods still serve version{'s' if len(everywhere) > 1 else ''} "
              f"{', '.join(map(str, everywhere))} on {len(serving)} pod(s)" if everywhere
              else f"{len(serving)} of {len(pods)} ready pod(s) serve the model")
    message = (f"InferenceServer {server!r} spec is invalid: {error}; {served}; the operator "
               "changes nothing until the server spec is fixed")
    out = _base(name, model.generation, state, message)
    out.update(
        availableVersions=",".join(map(str, everywhere)),
        readyPods=f"{len(serving)}/{len(pods)}",
        versions=versions,
        configHash=str((previous or {}).get("configHash") or ""),
    )
    out["conditions"] = [
        *_kstatus(out, model.generation, False, True, "ServerSpecInvalid", message, now, prev,
                  previous),
        condition("ConfigApplied", False, "ServerSpecInvalid", message, now, prev,
                  model.generation),
    ]
    return out


def _fold_version(number: int, per_pod: Sequence[tuple[str, VersionReport | None]]
                  ) -> dict[str, Any]:
    states: list[str] = []
    error = ""
    available = 0
    for _pod, report in per_pod:
        if report is None:
            states.append("START")
            continue
        if report.failed:
            states.append("FAILED")
            error = error or report.error_message
        else:
            states.append(report.state)
        if report.state == "AVAILABLE":
            available += 1
    worst = min(states, key=lambda s: _VERSION_ORDER.index(s) if s in _VERSION_ORDER else 1)
    out: dict[str, Any] = {"version": number, "state": worst, "availablePods": available}
    if error:
        out["errorMessage"] = error
    return out


def _first_failure(model: str, pods: Sequence[PodReport]) -> str | None:
    failures = [
        (p.name, v) for p in pods for v in p.models.get(model, ()) if v.failed
    ]
    if not failures:
        return None
    pod, version = failures[0]
    text = f"version {version.version} failed to load on pod {pod}: {version.error_message}"
    others = len({name for name, _ in failures}) - 1
    if others:
        text += f" (and on {others} more pod{'s' if others > 1 else ''})"
    return text


def unreachable(result: HandshakeResult) -> str:
    """``pod p (url) unreachable: why`` for the first pod that gave no HTTP answer, else ""."""
    for p in result.pods:
        if p.error and p.config_hash is None and not p.models:
            where = f" ({p.url})" if p.url else ""
            return f"pod {p.name}{where} unreachable: {p.error}"
    return ""


def model_status(model: ModelSpec, server: ServerSpec, result: HandshakeResult, pool: Pool,
                 now: str, previous: Mapping[str, Any] | None = None,
                 gave_up: str | None = None, unchanged: frozenset[str] = frozenset()
                 ) -> dict[str, Any]:
    """Fold one model's per-pod version statuses (from a handshake) into its status.

    ``unchanged`` names the stale pods (still on an older config) whose config carries this
    model's entry exactly as rendered now: they serve the wanted versions and count like pods
    that applied the new config (see READY and STATE in the module docstring).
    """
    name = model.model_name
    prev = _previous_conditions(previous)
    applied = list(result.applied)
    stale = list(result.stale)
    current = applied + [p for p in stale if p.name in unchanged]
    behind = [p for p in stale if p.name not in unchanged]
    serving = [p for p in current if any(v.state == "AVAILABLE" for v in p.models.get(name, ()))]
    numbers = sorted({v.version for p in current for v in p.models.get(name, ())})
    versions = []
    for number in numbers:
        per_pod = [(p.name, next((v for v in p.models.get(name, ()) if v.version == number),
                                 None)) for p in current]
        versions.append(_fold_version(number, per_pod))
    everywhere = [v["version"] for v in versions if v["availablePods"] == len(current) > 0]
    settling = any(v.settling for p in current for v in p.models.get(name, ()))
    empty = [p.name for p in current if not p.models.get(name)]
    failure = _first_failure(name, current)
    where = posixpath.join(server.mount_path, model.base_path)
    blocked = unreachable(result)

    if pool.ready == 0:
        state = PENDING
        message = (f"no ready pod of InferenceServer {server.name!r} yet "
                   f"({pool.existing} of {pool.replicas} pods exist)")
    elif failure:
        state, message = FAILED, failure
    elif not current:
        listed_before = any(name in p.models for p in stale)
        state = LOADING if listed_before else PENDING
        message = f"waiting for {len(stale)} pod(s) to load config {result.expected[:12]}"
        if blocked:
            message = f"{message}; {blocked}"
    elif empty and not settling and any(name in p.model_errors for p in applied):
        state = FAILED
        pod_name, why = next((p.name, p.model_errors[name]) for p in applied
                             if name in p.model_errors)
        message = f"pod {pod_name} serves no version of model {name!r}: {why}"
    elif empty and not settling and model.storage_uri:
        state = FAILED
        message = (f"pod {empty[0]} serves no version of model {name!r} from "
                   f"{model.storage_uri}: GET /v1/models/{name} on the pod gives the storage's "
                   "error (wrong credentials, unreachable endpoint, no numbered version folder)")
    elif empty and not settling:
        state = FAILED
        message = (f"pod {empty[0]} serves no version of model {name!r}: is there a numbered "
                   f"version folder ({where}/1/model.xml) in the server's storage?")
    elif settling or len(serving) < len(current):
        state = LOADING
        busy = [(p.name, v) for p in current for v in p.models.get(name, ()) if v.settling]
        message = (f"version {busy[0][1].version} is {busy[0][1].state} on pod {busy[0][0]}"
                   if busy else "waiting for versions to load")
    elif behind and not gave_up:
        state = LOADING
        message = (f"available on {len(serving)} pod(s); waiting for "
                   f"{', '.join(p.name for p in behind)} to load the new config")
        if blocked:
            message = f"{message}; {blocked}"
    else:
        state = AVAILABLE
        message = (f"version{'s' if len(everywhere) > 1 else ''} "
                   f"{', '.join(map(str, everywhere))} available on {len(serving)} pod(s)")
    # A give-up (server-wide) concerns this model only where it is not served as wanted.
    if gave_up is not None and (state not in (AVAILABLE, FAILED) or behind):
        if state != FAILED:
            message = f"{message}; {gave_up}"
    else:
        gave_up = None

    config_ok = pool.ready > 0 and not behind
    if config_ok:
        reason, text = "Applied", (f"all {len(current)} ready pod(s) serve this model's entry "
                                   f"of config {result.expected[:12]}")
    elif pool.ready == 0:
        reason, text = "NoReadyPods", message
    else:
        reason = "TimedOut" if gave_up else "Unreachable" if blocked else "Waiting"
        text = gave_up or (f"{len(current)} of {len(current) + len(behind)} ready pod(s) serve "
                           f"this model's entry of config {result.expected[:12]}")
        if blocked and not gave_up:
            text = f"{text}; {blocked}"
    out = _base(name, model.generation, state, message)
    out.update(
        availableVersions=",".join(map(str, everywhere)),
        readyPods=f"{len(serving)}/{pool.replicas}",
        versions=versions,
        configHash=result.expected,
    )
    stalled = state == FAILED or gave_up is not None
    kreason = "TimedOut" if stalled and state != FAILED else state
    out["conditions"] = [
        *_kstatus(out, model.generation, state == AVAILABLE and not stalled, stalled, kreason,
                  message, now, prev, previous),
        condition("ConfigApplied", config_ok, reason, text, now, prev, model.generation),
    ]
    return out


def missing_pods(pool: Pool) -> tuple[str, str] | None:
    """``(reason, message)`` saying which pods are missing or not ready, or None if none."""
    if pool.existing < pool.replicas:
        return ("PodsMissing", f"{pool.existing} of {pool.replicas} pod(s) exist, "
                f"{pool.ready} ready")
    if pool.ready < pool.replicas:
        names = ", ".join(pool.not_ready[:5]) + (" …" if len(pool.not_ready) > 5 else "")
        return ("PodsNotReady", f"{pool.ready} of {pool.replicas} pod(s) ready"
                + (f"; not ready: {names}" if names else ""))
    return None


def server_status(server: ServerSpec, selector: str, pool: Pool, models: int,
                  result: HandshakeResult | None, now: str,
                  previous: Mapping[str, Any] | None = None, gave_up: str | None = None,
                  message: str | None = None) -> dict[str, Any]:
    """The InferenceServer's status: pods, the config hash they all report, model count.

    Ready is True when ``spec.replicas`` pods are ready and all report the rendered config;
    otherwise its reason says what is missing: ``PodsMissing`` (fewer pods exist than
    wanted), ``PodsNotReady`` (named), ``ConfigPending`` (pods still on an older config) or
    ``Unreachable`` (a pod the operator could not call, with its URL and the error).
    """
    prev = _previous_conditions(previous)
    applied = len(result.applied) if result else 0
    stale = result.stale if result else ()
    hashes = {p.config_hash for p in result.pods} if result else set()
    common = next(iter(hashes)) if len(hashes) == 1 and None not in hashes else ""
    config_ok = result is not None and pool.ready > 0 and not stale
    blocked = unreachable(result) if result else ""
    missing = missing_pods(pool)
    if pool.replicas == 0 and pool.existing == 0:
        reason, text = "ScaledToZero", "spec.replicas is 0: no pods to serve models"
    elif missing:
        reason, text = missing
    elif config_ok:
        reason, text = "Ready", f"{applied} ready pod(s) serve {models} model(s)"
    else:
        reason = "Unreachable" if blocked else "ConfigPending"
        text = (f"{applied} of {pool.ready} ready pod(s) report config "
                f"{(result.expected if result else '')[:12]}; waiting for "
                f"{', '.join(p.name for p in stale)}")
        if blocked:
            text = f"{text}; {blocked}"
    if missing and stale and pool.ready:
        text = f"{text}; {len(stale)} ready pod(s) still on an older config"
    if gave_up:
        text = f"{text}; {gave_up}"
    if message is None:
        message = text
    out: dict[str, Any] = {
        "replicas": pool.existing,
        "readyReplicas": pool.ready,
        "selector": selector,
        "models": models,
        "configHash": common,
        "desiredConfigHash": result.expected if result else "",
        "appliedPods": f"{applied}/{pool.ready}",
        "message": message,
        "image": server.image,  # the image the pods run (spec.image or --server-image)
    }
    ready = reason in ("Ready", "ScaledToZero") and not gave_up
    stalled = gave_up is not None
    if pool.ready == 0:
        applied_reason = "NoReadyPods"
    elif config_ok:
        applied_reason = "Applied"
    else:
        applied_reason = "TimedOut" if gave_up else "Waiting"
    out["conditions"] = [
        *_kstatus(out, server.generation, ready, stalled, "TimedOut" if stalled else reason,
                  message, now, prev, previous),
        condition("ConfigApplied", config_ok, applied_reason, message, now, prev,
                  server.generation),
    ]
    return out


def server_invalid_status(generation: int | None, error: str, now: str,
                          previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The InferenceServer's status when its spec is refused: Stalled, the error named."""
    prev = _previous_conditions(previous)
    message = f"invalid spec: {error}"
    out: dict[str, Any] = {"message": message, "configHash": "", "models": 0}
    out["conditions"] = [
        *_kstatus(out, generation, False, True, "InvalidSpec", message, now, prev, previous),
        condition("ConfigApplied", False, "InvalidSpec", message, now, prev, generation),
    ]
    return out
