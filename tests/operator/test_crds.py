"""The CRDs in crds/: valid, structural, the documented printer columns, and the examples.

Every ``examples/*.yaml`` must pass the CRD's own ``openAPIV3Schema`` (jsonschema) *and* the
operator's decoder and render valid Kubernetes objects. Every ``examples/invalid/*.yaml`` names
which layer refuses it and (part of) the message in its header::

    # rejected-by: schema          (or: operator)
    # expect-error: 'gpu' does not match
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from ovserve.operator import render
from ovserve.operator.resources import ModelSpec, ServerSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]
CRDS = {"InferenceServer": ROOT / "crds/inferenceserver.yaml",
        "InferenceModel": ROOT / "crds/inferencemodel.yaml"}
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "examples/invalid").glob("*.yaml"))


def crd(kind: str) -> dict[str, Any]:
    return dict(yaml.safe_load(CRDS[kind].read_text()))


def schema(kind: str) -> dict[str, Any]:
    return dict(crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema(doc["kind"]))
    return [e.message for e in validator.iter_errors(doc)]


def decode(doc: dict[str, Any]) -> ServerSpec | ModelSpec:
    body = {**doc, "metadata": {"namespace": "ml", "uid": "u", **doc["metadata"]}}
    return ServerSpec.from_body(body) if doc["kind"] == "InferenceServer" else \
        ModelSpec.from_body(body)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_a_valid_kubernetes_object(kind: str) -> None:
    kubernetes_validate.validate(crd(kind), "1.30.0", strict=True)


def _walk(node: dict[str, Any], path: str, out: list[str]) -> None:
    special = node.get("x-kubernetes-int-or-string") or node.get(
        "x-kubernetes-preserve-unknown-fields")
    if "type" not in node and not special and not path.endswith(("anyOf", "oneOf")):
        out.append(path)
    for key, child in (node.get("properties") or {}).items():
        _walk(child, f"{path}.{key}", out)
    if isinstance(node.get("items"), dict):
        _walk(node["items"], f"{path}[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        _walk(node["additionalProperties"], f"{path}{{}}", out)


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind: str) -> None:
    untyped: list[str] = []
    _walk(schema(kind), "", untyped)
    assert untyped == []
    version = crd(kind)["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert set(schema(kind)["properties"]) == {"apiVersion", "kind", "metadata", "spec", "status"}


def test_names_and_printer_columns() -> None:
    server, model = crd("InferenceServer"), crd("InferenceModel")
    assert server["spec"]["group"] == model["spec"]["group"] == "ovserve.io"
    assert server["spec"]["names"]["shortNames"] == ["isrv"]
    assert model["spec"]["names"]["shortNames"] == ["im"]
    columns = {k: [c["name"] for c in crd(k)["spec"]["versions"][0]["additionalPrinterColumns"]]
               for k in CRDS}
    assert columns["InferenceModel"] == ["Server", "Device", "State", "Versions", "Ready", "Age",
                                       "Message"]
    assert columns["InferenceServer"] == ["Replicas", "Ready", "Models", "Config Hash", "Age"]
    assert server["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] == \
        ".spec.replicas"


def test_schema_defaults_match_the_operators_defaults() -> None:
    props = schema("InferenceServer")["properties"]["spec"]["properties"]
    decoded = ServerSpec.from_body({"metadata": {"name": "x", "namespace": "n"}, "spec": {}})
    assert props["replicas"]["default"] == decoded.replicas
    # No persisted image default (issue 13, item 8): an empty image is the operator's flag.
    assert "default" not in props["image"] and "minLength" not in props["image"]
    assert props["drainSeconds"]["default"] == decoded.drain_seconds
    assert props["podDisruptionBudget"]["properties"]["enabled"]["default"] is \
        decoded.disruption.enabled
    cache = ServerSpec.from_body({"metadata": {"name": "x", "namespace": "n"},
                                  "spec": {"compileCache": {"emptyDir": {}}}}).compile_cache
    assert cache is not None
    assert props["compileCache"]["properties"]["mountPath"]["default"] == cache.mount_path
    assert props["restPort"]["default"] == decoded.rest_port
    assert props["gpu"]["properties"]["resourceName"]["default"] == decoded.gpu_resource
    assert props["logLevel"]["default"] == decoded.log_level
    assert props["storage"]["properties"]["mountPath"]["default"] == decoded.mount_path
    model = schema("InferenceModel")["properties"]["spec"]["properties"]
    decoded_model = ModelSpec.from_body({"metadata": {"name": "m", "namespace": "n"}})
    assert model["server"]["default"] == decoded_model.server
    assert model["targetDevice"]["default"] == decoded_model.target_device


def test_gpu_resource_pattern_takes_intel_and_nvidia() -> None:
    pattern = schema("InferenceServer")["properties"]["spec"]["properties"]["gpu"]["properties"][
        "resourceName"]["pattern"]
    for name in ("gpu.intel.com/i915", "gpu.intel.com/xe", "nvidia.com/gpu", "amd.com/gpu",
                 "nvidia.com/mig-1g.10gb"):
        assert re.match(pattern, name), name
    assert not re.match(pattern, "nvidia")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_pass_schema_and_operator(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert schema_errors(doc) == []
    spec = decode(doc)
    if isinstance(spec, ServerSpec):
        out = render.render_server(spec, [])
        for obj in (out.config_map, out.deployment, out.service, out.pdb):
            if obj is not None:
                kubernetes_validate.validate(obj, "1.30.0", strict=True)


def _header(path: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} needs a '# {key}: ...' line"
    return match.group(1).strip()


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_examples_are_rejected_with_the_expected_message(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    layer, expected = _header(path, "rejected-by"), _header(path, "expect-error")
    errors = schema_errors(doc)
    if layer == "schema":
        assert any(expected in e for e in errors), errors
    else:
        assert layer == "operator" and errors == []
        with pytest.raises(SpecError) as err:
            decode(doc)
        assert expected in str(err.value)


def _paths(node: dict[str, Any], prefix: str) -> list[str]:
    out: list[str] = []
    for key, child in (node.get("properties") or {}).items():
        path = f"{prefix}.{key}" + ("[]" if child.get("type") == "array" else "")
        out.append(path)
        target = child.get("items") if child.get("type") == "array" else child
        if isinstance(target, dict):
            out += _paths(target, path)
    return out


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_field_is_in_the_crd_reference(kind: str) -> None:
    doc = (ROOT / "docs/crd-reference.md").read_text()
    documented = set(re.findall(r"`([a-zA-Z.\[\]]+)`", doc))
    missing = []
    for part in ("spec", "status"):
        for path in _paths(schema(kind)["properties"][part], part):
            ancestors = [path[: i + 2] for i in range(len(path)) if path[i: i + 2] == "[]"]
            covered = (path in documented or any(d.startswith(path) for d in documented)
                       or any(a in documented for a in ancestors))
            if not covered:
                missing.append(path)
    assert missing == []
