"""The chart lints clean (strict) and renders valid objects for every ci/ scenario.

Each rendered Kubernetes object is checked with kubernetes-validate in strict mode (unknown
fields are errors) against the oldest Kubernetes the chart supports and the newest schema set
available; the custom resources are checked against the CRDs' own openAPIV3Schema.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

KUBE_VERSIONS = ("1.26.0", kubernetes_validate.utils.latest_version())
BUILTIN_GROUPS = ("v1", "apps/", "batch/", "rbac.authorization.k8s.io/", "apiextensions.k8s.io/",
                  "networking.k8s.io/", "policy/")


def test_lint_strict_is_clean(chart_dir: Path, scenario: str, values_for: Any) -> None:
    report = helm.lint(chart_dir, values_for(scenario), strict=True, namespace="ovserve-system")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_every_object_is_valid_kubernetes(render: Any, scenario: str, values_for: Any) -> None:
    rendered = render(values_for(scenario))
    checked = 0
    for m in rendered.manifests:
        if not m.obj["apiVersion"].startswith(BUILTIN_GROUPS):
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(m.obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{m.template}: {m.kind}/{m.name} invalid for {version}: "
                            f"{path}: {exc.message}")
        checked += 1
    assert checked >= 6  # ServiceAccount, RBAC, Deployment, hook Job and Role, test Pod


def test_custom_resources_match_their_crd(render: Any, scenario: str, values_for: Any,
                                          crd_schema: Any) -> None:
    rendered = render(values_for(scenario))
    servers = rendered.of_kind("InferenceServer")
    assert len(servers) == 1
    for m in servers:
        jsonschema.validate(m.obj, crd_schema("InferenceServer"))


def test_crds_are_valid_kubernetes(chart: Any) -> None:
    crds = chart.crds
    assert sorted(c["filename"] for c in crds) == ["ovserve/crds/inferencemodel.yaml",
                                                   "ovserve/crds/inferenceserver.yaml"]
    for c in crds:
        obj = yaml.safe_load(c["data"])
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        assert obj["spec"]["group"] == "ovserve.io"


def test_notes_tell_the_next_steps(render: Any, scenario: str, values_for: Any) -> None:
    notes = render(values_for(scenario)).notes
    assert "rollout status deployment/ovserve-operator" in notes
    assert "Helm never upgrades CRDs" in notes
    assert "kind: InferenceModel" in notes
    assert "get im" in notes


def test_names_follow_the_release(render: Any) -> None:
    rendered = render({}, release="prod-ovserve")
    names = {m.name for m in rendered.of_kind("Deployment")}
    assert names == {"prod-ovserve-operator"}
    rendered = render({"fullnameOverride": "ml"}, release="x")
    assert {m.name for m in rendered.of_kind("Deployment")} == {"ml-operator"}


def test_default_inference_server_can_be_left_out(render: Any) -> None:
    rendered = render({"defaultServer": {"enabled": False}})
    assert "InferenceServer" not in rendered.kinds()
    assert "Job" not in rendered.kinds()  # nothing for the cleanup hook to delete
    assert "Pod" not in rendered.kinds()
    assert "No default InferenceServer" in rendered.notes


def test_e2e_release_values_render_and_validate(render: Any, crd_schema: Any,
                                                chart_dir: Path) -> None:
    """The values e2e/harness.py installs on kind pass the schema and give valid objects."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("e2e_harness",
                                                  chart_dir.parents[1] / "e2e" / "harness.py")
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness  # dataclasses look their module up there
    try:
        spec.loader.exec_module(harness)
    finally:
        del sys.modules[spec.name]
    values = harness.release_values(harness.Settings())
    rendered = render(values, namespace="ovserve-e2e")
    server = rendered.one("InferenceServer").obj
    jsonschema.validate(server, crd_schema("InferenceServer"))
    assert "image" not in server["spec"]
    assert server["spec"]["imagePullPolicy"] == "Never"
    assert server["spec"]["storage"]["hostPath"]["path"] == harness.MODELS_ON_NODE
    operator = rendered.one("Deployment").obj["spec"]["template"]["spec"]["containers"][0]
    assert operator["image"] == "ovserve-operator:dev"
    assert "--server-image=ovserve-server:dev" in operator["args"]
    for m in rendered.manifests:
        if m.obj["apiVersion"].startswith(BUILTIN_GROUPS):
            kubernetes_validate.validate(m.obj, KUBE_VERSIONS[-1], strict=True)
