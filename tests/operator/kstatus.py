"""kstatus's documented rules for a custom resource, as a small function (no Go here).

kstatus (sigs.k8s.io/cli-utils/pkg/kstatus; used by ``kubectl wait``-style tooling, Helm 4's
``--wait``, Flux and kpt) computes one of Current, InProgress, Failed, Terminating for an
object. For a resource it has no built-in rules for, its README and ``Compute`` say, in order:

1. ``metadata.deletionTimestamp`` set -> Terminating;
2. ``status.observedGeneration`` present and different from ``metadata.generation`` ->
   InProgress (the controller has not observed the latest spec);
3. a condition ``Reconciling`` with status True -> InProgress; a condition ``Stalled`` with
   status True -> Failed (the first of the two found in ``status.conditions``);
4. a condition ``Ready``: True -> Current, False or Unknown -> InProgress;
5. otherwise -> Current.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CURRENT, IN_PROGRESS, FAILED, TERMINATING = "Current", "InProgress", "Failed", "Terminating"


def kstatus(obj: Mapping[str, Any]) -> str:
    """The kstatus status of ``obj`` (a full object with ``metadata`` and ``status``)."""
    meta = obj.get("metadata") or {}
    st = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return TERMINATING
    generation = meta.get("generation")
    observed = st.get("observedGeneration")
    if generation is not None and observed is not None and observed != generation:
        return IN_PROGRESS
    conditions = [c for c in st.get("conditions") or [] if isinstance(c, Mapping)]
    for cond in conditions:
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return IN_PROGRESS
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return FAILED
    for cond in conditions:
        if cond.get("type") == "Ready":
            return CURRENT if cond.get("status") == "True" else IN_PROGRESS
    return CURRENT
