"""Fixtures for the chart tests: render helm/ovserve with the Helm engine itself, offline.

``helm-python-sdk`` binds the official Helm v4 Go SDK (no helm binary, no cluster), so these
tests see exactly what ``helm template`` / ``helm install`` would produce. Used by every module
in tests/helm/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ovserve"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "ovserve"
NAMESPACE = "ovserve-system"


@dataclass(frozen=True)
class Manifest:
    """One rendered Kubernetes object and the template it came from."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("labels") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"].get("annotations") or {})


class Rendered:
    """The output of one render: objects (hooks and tests included) and NOTES.txt."""

    def __init__(self, files: dict[str, str]) -> None:
        self.notes = ""
        self.manifests: list[Manifest] = []
        for template, text in sorted(files.items()):
            if template.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.manifests.append(Manifest(template, doc))

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind == kind]

    def one(self, kind: str) -> Manifest:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, got {[m.name for m in found]}"
        return found[0]

    def kinds(self) -> set[str]:
        return {m.kind for m in self.manifests}


def _load_values(scenario: str) -> dict[str, Any]:
    data = yaml.safe_load((CHART / "ci" / scenario).read_text())
    assert isinstance(data, dict), scenario
    return data


@pytest.fixture
def scenario_values() -> Any:
    """``scenario_values("gpu-values.yaml") -> dict``: a ci/ scenario's values."""
    return _load_values


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render_with(chart: Any, values: dict[str, Any] | None = None, *,
                namespace: str = NAMESPACE, release: str = RELEASE) -> Rendered:
    files = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    return Rendered(files)


@pytest.fixture
def render(chart: Any) -> Any:
    """``render(values, namespace=..., release=...) -> Rendered``."""

    def _render(values: dict[str, Any] | None = None, **kw: Any) -> Rendered:
        return render_with(chart, values, **kw)

    return _render


def _crd_schema(kind: str) -> dict[str, Any]:
    for path in (CHART / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = crd["spec"]["versions"]
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"no CRD for {kind} in {CHART / 'crds'}")


@pytest.fixture
def crd_schema() -> Any:
    """``crd_schema("InferenceServer") -> dict``: the openAPIV3Schema of one of the chart's CRDs."""
    return _crd_schema


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``scenario`` runs for the chart defaults and every ci/*-values.yaml."""
    if "scenario" in metafunc.fixturenames:
        metafunc.parametrize("scenario", ["defaults", *SCENARIOS])


@pytest.fixture
def chart_dir() -> Path:
    return CHART


@pytest.fixture
def values_for(scenario_values: Any) -> Any:
    """``values_for(scenario) -> dict``: {} for "defaults", else the ci/ file's values."""

    def _values(scenario: str) -> dict[str, Any]:
        return {} if scenario == "defaults" else dict(scenario_values(scenario))

    return _values
