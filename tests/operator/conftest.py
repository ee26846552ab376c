"""Operator test setup: no real cluster, helpers importable, fakes as fixtures.

``KUBECONFIG`` is pointed at a file that does not exist *before* anything imports the
``kubernetes`` client (it reads the variable once, at import), so no test can reach a real
cluster by accident; the integration tests give the operator process its own kubeconfig for
the stand-in API server. This folder goes on ``sys.path`` so tests can
``from operator_fakes import ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ["KUBECONFIG"] = str(HERE / "no-such-kubeconfig")
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import pytest  # noqa: E402
from operator_fakes import FakeKube, FakePods  # noqa: E402


@pytest.fixture()
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture()
def pods() -> FakePods:
    return FakePods()
