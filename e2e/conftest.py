"""Fixtures for the kind end-to-end tests (run by ``make e2e``; never by the default pytest run,
whose testpaths is tests/).

The cluster must exist and hold the images (``make e2e`` does that). The session fixture
installs the release when it is missing (``harness.ensure_installed`` is idempotent), so
``pytest e2e`` also works on its own against a cluster left by ``E2E_KEEP=1 make e2e``.
Where no cluster is reachable the session stops at once with one plain message.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("ovserve_e2e_harness", HERE / "harness.py")
assert _spec is not None and _spec.loader is not None
harness: Any = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = harness
_spec.loader.exec_module(harness)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "uninstall: runs last; removes the Helm release")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``uninstall`` run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("uninstall") is not None)


@pytest.fixture(scope="session")
def e2e() -> Any:
    """The harness module (e2e/harness.py)."""
    return harness


@pytest.fixture(scope="session")
def settings() -> Any:
    return harness.Settings()


@pytest.fixture(scope="session")
def cluster(settings: Any) -> Iterator[Any]:
    kubeconfig = Path(settings.kubeconfig)
    if not kubeconfig.is_file():
        pytest.exit(f"no kubeconfig at {kubeconfig}: run `make e2e` (it creates the kind "
                    "cluster, loads the images and installs the chart)", returncode=2)
    with harness.api_client(settings) as api:
        c = harness.Cluster(api, settings.namespace)
        try:
            c.core.list_namespace(limit=1)
        except Exception as exc:  # any failure here means "no cluster"
            pytest.exit(f"the cluster in {kubeconfig} is not reachable ({exc}); "
                        "run `make e2e`", returncode=2)
        if not harness.release_exists(settings):  # e.g. after a previous session's uninstall
            harness.ensure_installed(settings, HERE / ".models")
        yield c


@pytest.fixture(scope="session")
def server_pods(cluster: Any) -> list[Any]:
    """The default InferenceServer's pods, once all are Ready."""

    def ready() -> list[Any] | None:
        pods = cluster.pods("app.kubernetes.io/name=ovserve-server,"
                            "app.kubernetes.io/instance=default")
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        isrv = cluster.get("inferenceservers", "default") or {}
        want = (isrv.get("spec") or {}).get("replicas", 1)
        ok = [p for p in live if any(c.type == "Ready" and c.status == "True"
                                     for c in (p.status.conditions or []))]
        return ok if len(ok) == want == len(live) else None

    pods: list[Any] = harness.wait_for("the default InferenceServer's pods to be Ready", ready,
                                       timeout=300)
    return pods


@pytest.fixture
def model(cluster: Any) -> Iterator[Any]:
    """``model(name, **spec) -> name``: create an InferenceModel, deleted after the test."""
    created: list[str] = []

    def _create(name: str, **spec: Any) -> str:
        cluster.create("inferencemodels", {
            "apiVersion": "ovserve.io/v1alpha1",
            "kind": "InferenceModel",
            "metadata": {"name": name},
            "spec": spec,
        })
        created.append(name)
        return name

    yield _create
    for name in created:
        cluster.delete("inferencemodels", name)
    for name in created:
        harness.wait_for(f"InferenceModel {name} to be deleted",
                         lambda n=name: True if cluster.get("inferencemodels", n) is None
                         else None, timeout=120)


@pytest.fixture(scope="session")
def wait_for() -> Any:
    return harness.wait_for


@pytest.fixture(scope="session")
def restarts_by_pod() -> Any:
    return harness.restarts_by_pod
