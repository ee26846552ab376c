"""The chart's CRDs are byte-identical copies of crds/, the single source.

Helm installs helm/ovserve/crds/ on `helm install`; `kubectl apply -f crds/` is the upgrade
path. Both must be the same bytes. To resync after editing crds/: `make crds-sync`.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "crds"
COPY = REPO / "helm" / "ovserve" / "crds"


def test_same_files() -> None:
    source = sorted(p.name for p in SOURCE.glob("*.yaml"))
    assert source == ["inferencemodel.yaml", "inferenceserver.yaml"]
    assert sorted(p.name for p in COPY.iterdir()) == source


def test_byte_identical() -> None:
    for src in sorted(SOURCE.glob("*.yaml")):
        copy = COPY / src.name
        assert copy.read_bytes() == src.read_bytes(), (
            f"{copy.relative_to(REPO)} differs from {src.relative_to(REPO)}: run `make crds-sync`"
        )
