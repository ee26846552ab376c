"""Version policies and the planner, as a table of named cases (OVMS semantics)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ovserve.server.config import VersionPolicy, parse_version_policy
from ovserve.server.types import State
from ovserve.server.versions import (
    AllVersions,
    LatestVersions,
    Plan,
    SpecificVersions,
    plan,
    strategy,
)

A, L, S, U, E = State.AVAILABLE, State.LOADING, State.START, State.UNKNOWN, State.END
ALL = VersionPolicy("all")
LATEST1 = VersionPolicy()
LATEST2 = VersionPolicy("latest", num_versions=2)


def specific(*versions: int) -> VersionPolicy:
    return VersionPolicy("specific", versions=versions)


@dataclass(frozen=True)
class Case:
    id: str
    available: tuple[int, ...]
    current: dict[int, State]
    policy: VersionPolicy
    start: tuple[int, ...]
    retire: tuple[int, ...]
    serve: tuple[int, ...]


CASES = [
    Case("empty repository", (), {}, LATEST1, (), (), ()),
    Case("first load, latest 1 picks the highest", (1, 2, 3), {}, LATEST1, (3,), (), (3,)),
    Case("first load, latest 2", (1, 2, 3), {}, LATEST2, (2, 3), (), (2, 3)),
    Case("latest N larger than what exists", (4,), {}, LATEST2, (4,), (), (4,)),
    Case("first load, all", (1, 2, 3), {}, ALL, (1, 2, 3), (), (1, 2, 3)),
    Case("specific: missing versions are simply not served", (1, 2), {}, specific(2, 7),
         (2,), (), (2,)),
    Case("specific: none exists", (1, 2), {}, specific(5), (), (), ()),
    Case("steady state changes nothing", (1, 2), {2: A}, LATEST1, (), (), (2,)),
    Case("new folder under latest 1: start it, retire the old one", (1, 2), {1: A}, LATEST1,
         (2,), (1,), (2,)),
    Case("new folder under all: start it, keep the rest", (1, 2), {1: A}, ALL, (2,), (), (1, 2)),
    Case("folder disappears: retire it", (1,), {1: A, 2: A}, ALL, (), (2,), (1,)),
    Case("newest folder disappears under latest 1: previous version comes back", (1,),
         {1: E, 2: A}, LATEST1, (1,), (2,), (1,)),
    Case("base path emptied: retire everything", (), {1: A, 2: A}, ALL, (), (1, 2), ()),
    Case("ended version is not retired twice", (2,), {1: E, 2: A}, LATEST1, (), (), (2,)),
    Case("failed version is retried", (1,), {1: U}, LATEST1, (1,), (), (1,)),
    Case("failed newest version: retry it and keep the working one", (1, 2), {1: A, 2: U},
         LATEST1, (2,), (), (1, 2)),
    Case("failed newest version on first load: fall back to the previous one", (1, 2),
         {2: U}, LATEST1, (1, 2), (), (1, 2)),
    Case("failed version under specific: no fallback outside the list", (1, 2, 3),
         {3: U}, specific(3), (3,), (), (3,)),
    Case("failed version whose folder disappeared is retired", (1,), {1: A, 2: U}, ALL,
         (), (2,), (1,)),
    Case("policy widened from latest 1 to all", (1, 2, 3), {1: E, 2: E, 3: A}, ALL,
         (1, 2), (), (1, 2, 3)),
    Case("policy narrowed from all to specific", (1, 2, 3), {1: A, 2: A, 3: A}, specific(1),
         (), (2, 3), (1,)),
    Case("loading version is left alone", (1,), {1: L}, LATEST1, (), (), (1,)),
    Case("starting version no longer wanted is retired", (1, 2), {1: S, 2: A}, LATEST1,
         (), (1,), (2,)),
    Case("non-positive numbers are ignored", (0, -3, 1), {}, ALL, (1,), (), (1,)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    got = plan(case.available, case.current, case.policy)
    assert got == Plan(start=case.start, retire=case.retire, serve=case.serve)


def test_plan_accepts_any_iterable_in_any_order() -> None:
    assert plan(iter([3, 1, 2, 3]), {}, LATEST2) == Plan(start=(2, 3), serve=(2, 3))


def test_plan_empty_property() -> None:
    assert plan([1], {1: A}, LATEST1).empty
    assert not plan([1, 2], {1: A}, LATEST1).empty


@pytest.mark.parametrize(
    ("policy_json", "expected"),
    [
        ({"all": {}}, AllVersions()),
        ({"latest": {"num_versions": 3}}, LatestVersions(3)),
        ({"latest": {}}, LatestVersions(1)),
        ({"specific": {"versions": [3, 1]}}, SpecificVersions(frozenset({1, 3}))),
    ],
    ids=["all", "latest 3", "latest default", "specific"],
)
def test_strategy_from_config(policy_json: dict[str, object], expected: object) -> None:
    assert strategy(parse_version_policy(policy_json)) == expected


def test_strategies_select_from_sorted_versions() -> None:
    assert AllVersions().select([1, 5, 9]) == [1, 5, 9]
    assert LatestVersions(2).select([1, 5, 9]) == [5, 9]
    assert LatestVersions(0).select([1, 5, 9]) == []
    assert SpecificVersions(frozenset({5, 6})).select([1, 5, 9]) == [5]
