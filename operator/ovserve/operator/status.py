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
      observedGeneration: 4
      conditions:
        - {type: Ready, status: "False", reason: Loading, message: …}
        - {type: ConfigApplied, status: "True", reason: Applied, message: …}

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
    out: dict[str, Any] = {"state": state, "modelName": name, "message": message}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def invalid_status(model_name: str, generation: int | None, message: str, now: str,
                   previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Status of a model whose spec the operator refuses (a PermanentError)."""
    prev = _previous_conditions(previous)
    out = _base(model_name, generation, FAILED, message)
    out.update(availableVersions="", readyPods="0/0", versions=[], configHash="")
    out["conditions"] = [
        condition("Ready", False, "InvalidSpec", message, now, prev, generation),
        condition("ConfigApplied", False, "InvalidSpec", message, now, prev, generation),
    ]
    return out


def pending_status(model: ModelSpec, reason: str, message: str, now: str,
                   previous: Mapping[str, Any] | None = None, state: str = PENDING
                   ) -> dict[str, Any]:
    """Status of a model with nothing to fold yet (missing server, name clash…)."""
    prev = _previous_conditions(previous)
    out = _base(model.model_name, model.generation, state, message)
    out.update(availableVersions="", readyPods="0/0", versions=[], configHash="")
    out["conditions"] = [
        condition("Ready", False, reason, message, now, prev, model.generation),
        condition("ConfigApplied", False, reason, message, now, prev, model.generation),
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


def model_status(model: ModelSpec, server: ServerSpec, result: HandshakeResult, pool: Pool,
                 now: str, previous: Mapping[str, Any] | None = None,
                 gave_up: str | None = None) -> dict[str, Any]:
    """Fold one model's per-pod version statuses (from a handshake) into its status."""
    name = model.model_name
    prev = _previous_conditions(previous)
    applied = list(result.applied)
    stale = list(result.stale)
    serving = [p for p in applied if any(v.state == "AVAILABLE" for v in p.models.get(name, ()))]
    numbers = sorted({v.version for p in applied for v in p.models.get(name, ())})
    versions = []
    for number in numbers:
        per_pod = [(p.name, next((v for v in p.models.get(name, ()) if v.version == number),
                                 None)) for p in applied]
        versions.append(_fold_version(number, per_pod))
    everywhere = [v["version"] for v in versions if v["availablePods"] == len(applied) > 0]
    settling = any(v.settling for p in applied for v in p.models.get(name, ()))
    empty = [p.name for p in applied if not p.models.get(name)]
    failure = _first_failure(name, applied)
    where = posixpath.join(server.mount_path, model.base_path)

    if pool.ready == 0:
        state = PENDING
        message = (f"no ready pod of InferenceServer {server.name!r} yet "
                   f"({pool.existing} of {pool.replicas} pods exist)")
    elif failure:
        state, message = FAILED, failure
    elif not applied:
        listed_before = any(name in p.models for p in stale)
        state = LOADING if listed_before else PENDING
        message = f"waiting for {len(stale)} pod(s) to load config {result.expected[:12]}"
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
    elif settling or len(serving) < len(applied):
        state = LOADING
        busy = [(p.name, v) for p in applied for v in p.models.get(name, ()) if v.settling]
        message = (f"version {busy[0][1].version} is {busy[0][1].state} on pod {busy[0][0]}"
                   if busy else "waiting for versions to load")
    elif stale and not gave_up:
        state = LOADING
        message = (f"available on {len(serving)} pod(s); waiting for "
                   f"{', '.join(p.name for p in stale)} to load the new config")
    else:
        state = AVAILABLE
        message = (f"version{'s' if len(everywhere) > 1 else ''} "
                   f"{', '.join(map(str, everywhere))} available on {len(serving)} pod(s)")
    if gave_up and state != FAILED:
        message = f"{message}; {gave_up}"

    config_ok = pool.ready > 0 and not stale
    if config_ok:
        reason, text = "Applied", f"all {len(applied)} ready pod(s) report config " \
                                  f"{result.expected[:12]}"
    elif pool.ready == 0:
        reason, text = "NoReadyPods", message
    else:
        reason = "TimedOut" if gave_up else "Waiting"
        text = gave_up or (f"{len(applied)} of {len(applied) + len(stale)} ready pod(s) report "
                           f"config {result.expected[:12]}")
    out = _base(name, model.generation, state, message)
    out.update(
        availableVersions=",".join(map(str, everywhere)),
        readyPods=f"{len(serving)}/{pool.replicas}",
        versions=versions,
        configHash=result.expected,
    )
    out["conditions"] = [
        condition("Ready", state == AVAILABLE, state, message, now, prev, model.generation),
        condition("ConfigApplied", config_ok, reason, text, now, prev, model.generation),
    ]
    return out


def server_status(server: ServerSpec, selector: str, pool: Pool, models: int,
                  result: HandshakeResult | None, now: str,
                  previous: Mapping[str, Any] | None = None, gave_up: str | None = None,
                  message: str | None = None) -> dict[str, Any]:
    """The InferenceServer's status: pods, the config hash they all report, model count."""
    prev = _previous_conditions(previous)
    applied = len(result.applied) if result else 0
    stale = len(result.stale) if result else 0
    hashes = {p.config_hash for p in result.pods} if result else set()
    common = next(iter(hashes)) if len(hashes) == 1 and None not in hashes else ""
    config_ok = result is not None and pool.ready > 0 and stale == 0
    if message is None:
        if pool.ready == 0:
            message = f"0 of {pool.replicas} pods ready"
        elif config_ok:
            message = f"{applied} ready pod(s) serve {models} model(s)"
        else:
            message = gave_up or (f"{applied} of {applied + stale} ready pod(s) report the "
                                  "new config")
    out: dict[str, Any] = {
        "replicas": pool.existing,
        "readyReplicas": pool.ready,
        "selector": selector,
        "models": models,
        "configHash": common,
        "desiredConfigHash": result.expected if result else "",
        "appliedPods": f"{applied}/{pool.ready}",
        "message": message,
    }
    if server.generation is not None:
        out["observedGeneration"] = server.generation
    if pool.ready == 0:
        reason = "NoReadyPods"
    elif config_ok:
        reason = "Applied"
    else:
        reason = "TimedOut" if gave_up else "Waiting"
    ready = config_ok and pool.ready >= server.replicas
    out["conditions"] = [
        condition("Ready", ready, "Ready" if ready else reason, message, now, prev,
                  server.generation),
        condition("ConfigApplied", config_ok, reason, message, now, prev, server.generation),
    ]
    return out
