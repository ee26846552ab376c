"""Version policies and the pure planner that decides which model versions to start or retire.

Called by :mod:`ovserve.server.manager` on every load, reload and file-system poll, once per
model. Nothing here does I/O: the manager scans the version folders (:mod:`.repository`),
passes the numbers found and the state of each tracked version, and applies the :class:`Plan`.

Policies (OVMS ``model_version_policy``), each a tiny :class:`Strategy`::

    {"all": {}}                          every numeric folder present
    {"latest": {"num_versions": 2}}      the 2 highest numeric folders present (default: 1)
    {"specific": {"versions": [1, 3]}}   those of 1 and 3 that exist; missing ones are not served

Planner rules:

* the *target* is ``policy.select(available)``;
* a version that failed to load (the manager passes it as ``State.UNKNOWN``) stays in the target
  and is started again (a retry); while it is broken, the policy is also applied to the
  available versions minus the failed ones, so ``latest 1`` keeps serving (or falls back to) the
  newest version that works: the plan's ``serve`` set is the union of both;
* a version in ``serve`` that is untracked, ``END``, ``UNLOADING`` or failed is started;
* a tracked version that is ``START``, ``LOADING``, ``AVAILABLE`` or failed and not in ``serve``
  is retired (this covers a version whose folder disappeared);
* reloading versions whose config changed is the manager's decision (it compares
  ``ModelConfig.load_key()``), not the planner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .config import VersionPolicy
from .types import State

__all__ = [
    "AllVersions",
    "LatestVersions",
    "Plan",
    "SpecificVersions",
    "Strategy",
    "plan",
    "strategy",
]

# States of a version that currently holds (or is getting) a model instance.
_LIVE = frozenset({State.START, State.LOADING, State.AVAILABLE})
# States in which a version needs a (new) load to be served.
_NEEDS_START = frozenset({State.UNKNOWN, State.UNLOADING, State.END})


class Strategy(Protocol):
    """Chooses the versions to serve from the numeric version folders present."""

    def select(self, available: Sequence[int]) -> list[int]:
        """``available`` is sorted ascending without duplicates; returns a sorted subset."""
        ...


@dataclass(frozen=True)
class AllVersions:
    def select(self, available: Sequence[int]) -> list[int]:
        return list(available)


@dataclass(frozen=True)
class LatestVersions:
    num_versions: int = 1

    def select(self, available: Sequence[int]) -> list[int]:
        return list(available[-self.num_versions :]) if self.num_versions > 0 else []


@dataclass(frozen=True)
class SpecificVersions:
    versions: frozenset[int]

    def select(self, available: Sequence[int]) -> list[int]:
        return [v for v in available if v in self.versions]


def strategy(policy: VersionPolicy) -> Strategy:
    """The strategy for a parsed ``model_version_policy``."""
    if policy.kind == "all":
        return AllVersions()
    if policy.kind == "specific":
        return SpecificVersions(frozenset(v for v in policy.versions if v > 0))
    return LatestVersions(policy.num_versions)


@dataclass(frozen=True)
class Plan:
    """What to do for one model. All tuples are sorted ascending."""

    start: tuple[int, ...] = ()   # load these (new, re-appeared, or failed and retried)
    retire: tuple[int, ...] = ()  # unload these after their in-flight requests finish
    serve: tuple[int, ...] = ()   # every version that should be served once the plan is applied

    @property
    def empty(self) -> bool:
        return not self.start and not self.retire


def plan(available: Iterable[int], current: Mapping[int, State], policy: VersionPolicy) -> Plan:
    """Decide which versions to start and retire.

    ``available``: the numeric version folders present (any order; non-positive ones ignored).
    ``current``: the state of every tracked version; a failed load is passed as ``State.UNKNOWN``.
    """
    present = sorted({v for v in available if v > 0})
    chooser = strategy(policy)
    target = set(chooser.select(present))
    failed = {v for v, s in current.items() if s == State.UNKNOWN}
    working = chooser.select([v for v in present if v not in failed])
    serve = target | set(working)
    start = [v for v in sorted(serve) if v not in current or current[v] in _NEEDS_START]
    retire = [
        v
        for v, s in sorted(current.items())
        if v not in serve and (s in _LIVE or s == State.UNKNOWN)
    ]
    return Plan(start=tuple(start), retire=tuple(retire), serve=tuple(sorted(serve)))
