"""The ovserve namespace package spans both source roots (see docs/architecture.md)."""

from __future__ import annotations

import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_namespace_spans_server_and_operator_roots() -> None:
    ovserve = importlib.import_module("ovserve")
    paths = {Path(p).resolve() for p in ovserve.__path__}
    assert ROOT / "server" / "ovserve" in paths
    assert ROOT / "operator" / "ovserve" in paths
    assert not (ROOT / "server" / "ovserve" / "__init__.py").exists()
    assert not (ROOT / "operator" / "ovserve" / "__init__.py").exists()


def test_operator_package_does_not_shadow_stdlib_operator() -> None:
    import operator

    assert hasattr(operator, "itemgetter")
    assert importlib.import_module("ovserve.operator").__name__ == "ovserve.operator"
