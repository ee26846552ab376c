"""Rendering: golden files for every object, Kubernetes validity, and the restart rules.

Golden files live in ``tests/operator/golden/``. After an intended change, regenerate them with
``OVSERVE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/operator/test_render.py`` and review
the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from operator_fakes import model_body, server_body

from ovserve.operator import render
from ovserve.operator.resources import ModelSpec, ServerSpec
from ovserve.server.config import config_hash, parse_config

GOLDEN = Path(__file__).parent / "golden"
K8S_VERSION = "1.30.0"

SERVERS: dict[str, dict[str, Any]] = {
    "minimal": {},
    "gpu-pvc-tls": {
        "replicas": 3,
        "image": "registry.example/ovserve-server:0.1.0",
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "regcred"}],
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "gpu": {"count": 1, "resourceName": "nvidia.com/gpu"},
        "nodeSelector": {"accelerator": "h100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                         "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "gpu"}}}}]}},
        "storage": {"persistentVolumeClaim": {"claimName": "model-repo"}, "subPath": "ovms",
                    "mountPath": "/models"},
        "restPort": 9001,
        "serviceType": "LoadBalancer",
        "metrics": {"enabled": True, "metricsList": ["ovms_requests_success", "ovms_streams"]},
        "tls": {"secretName": "gpu-tls"},
        "logLevel": "DEBUG",
        "fileSystemPollWaitSeconds": 0,
        "serviceAccountName": "ovserve-server",
        "podAnnotations": {"example.com/team": "vision"},
        "podLabels": {"team": "vision"},
    },
    # Issue 13, item 9: an OpenShift-style pool on Intel GPUs with every pod knob set.
    "openshift-knobs": {
        "replicas": 3,
        "image": "",
        "gpu": {"count": 1, "resourceName": "gpu.intel.com/xe"},
        "podSecurityContext": {"runAsNonRoot": True, "supplementalGroups": [110],
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
             "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "inference-critical",
        "env": [{"name": "OV_LOG", "value": "1"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "envFrom": [{"secretRef": {"name": "s3-creds"}, "prefix": "S3_"}],
        "volumes": [{"name": "extra", "configMap": {"name": "tokenizers"}}],
        "volumeMounts": [{"name": "extra", "mountPath": "/extra", "readOnly": True}],
        "compileCache": {"hostPath": {"path": "/var/cache/ovserve"}},
        "podDisruptionBudget": {"minAvailable": "50%"},
        "drainSeconds": 20,
    },
    "intel-gpu-hostpath-nometrics": {
        "gpu": {"count": 1},
        "storage": {"hostPath": {"path": "/srv/models", "type": "Directory"}},
        "metrics": {"enabled": False},
        "serviceType": "NodePort",
    },
}

MODELS = [
    model_body("resnet", server="srv", modelName="resnet50", basePath="vision/resnet50",
               targetDevice="GPU", versionPolicy={"latest": {"numVersions": 2}}, batchSize=1,
               shape="(1,3,224,224)", layout="NHWC:NCHW", nireq=4,
               pluginConfig={"PERFORMANCE_HINT": "LATENCY"}),
    model_body("add", server="srv"),
    model_body("bert", server="srv", versionPolicy={"all": {}},
               inputShapes={"input_ids": "(1,-1)", "attention_mask": "(1,-1)"},
               inputLayouts={"input_ids": "NC"}),
]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config.json inside a ConfigMap) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def golden(name: str, value: Any) -> None:
    path = GOLDEN / name
    text = value if isinstance(value, str) else yaml.dump(value, Dumper=_Dumper, sort_keys=True,
                                                          width=100)
    if os.environ.get("OVSERVE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with OVSERVE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"{name} differs from its golden file"


def rendered(variant: str, models: list[dict[str, Any]] | None = None) -> render.Rendered:
    server = ServerSpec.from_body(server_body("srv", **SERVERS[variant]))
    specs = [ModelSpec.from_body(m) for m in (MODELS if models is None else models)]
    return render.render_server(server, specs)


@pytest.mark.parametrize("variant", sorted(SERVERS))
def test_children_match_golden_files(variant: str) -> None:
    out = rendered(variant)
    golden(f"{variant}.configmap.yaml", out.config_map)
    golden(f"{variant}.deployment.yaml", out.deployment)
    golden(f"{variant}.service.yaml", out.service)
    if out.pdb is not None:
        golden(f"{variant}.pdb.yaml", out.pdb)


def test_config_json_matches_golden_file() -> None:
    out = rendered("minimal")
    golden("config.json", out.config.decode())
    assert out.config_map["data"]["config.json"] == out.config.decode()


@pytest.mark.parametrize("variant", sorted(SERVERS))
def test_children_are_valid_kubernetes_objects(variant: str) -> None:
    out = rendered(variant)
    for obj in (out.config_map, out.deployment, out.service, out.pdb):
        if obj is not None:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_config_is_what_the_server_accepts_and_the_annotation_is_its_hash() -> None:
    out = rendered("gpu-pvc-tls")
    parsed = parse_config(out.config, base_dir="/")
    assert [m.name for m in parsed.models] == ["add", "bert", "resnet50"]
    assert parsed.model("resnet50") is not None
    assert parsed.model("add").base_path == "/models/add"  # type: ignore[union-attr]
    annotation = out.config_map["metadata"]["annotations"][render.CONFIG_HASH_ANNOTATION]
    assert annotation == out.config_hash == config_hash(out.config)


def test_order_of_models_does_not_change_the_bytes() -> None:
    forward = rendered("minimal", MODELS)
    backward = rendered("minimal", list(reversed(MODELS)))
    assert forward.config == backward.config


def test_unrelated_metadata_edit_keeps_the_hash() -> None:
    edited = [dict(m) for m in MODELS]
    edited[0] = {**MODELS[0], "metadata": {**MODELS[0]["metadata"], "generation": 9,
                                           "labels": {"team": "x"}}}
    assert rendered("minimal", edited).config_hash == rendered("minimal").config_hash


def test_model_change_rewrites_the_config_map_but_not_the_pod_template() -> None:
    before = rendered("gpu-pvc-tls")
    changed = [model_body("add", server="srv", nireq=2), *MODELS[:1], *MODELS[2:]]
    after = rendered("gpu-pvc-tls", changed)
    assert after.config_hash != before.config_hash
    assert after.config_map != before.config_map
    assert after.deployment == before.deployment
    assert after.service == before.service


def test_pool_change_changes_the_pod_template() -> None:
    server = ServerSpec.from_body(server_body("srv", image="ovserve-server:0.2.0"))
    before = render.deployment(ServerSpec.from_body(server_body("srv")))
    after = render.deployment(server)
    assert before["spec"]["template"] != after["spec"]["template"]
    assert (before["metadata"]["annotations"][render.RENDERED_HASH_ANNOTATION]
            != after["metadata"]["annotations"][render.RENDERED_HASH_ANNOTATION])


def test_config_is_mounted_as_a_directory_never_with_sub_path() -> None:
    deployment = rendered("gpu-pvc-tls").deployment
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/config", "readOnly": True}
    assert "--config_path" in container["args"]
    assert container["args"][container["args"].index("--config_path") + 1] == "/config/config.json"
    assert mounts["models"]["readOnly"] is True


def test_gpu_request_and_placement() -> None:
    pod = rendered("gpu-pvc-tls").deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"accelerator": "h100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    intel = rendered("intel-gpu-hostpath-nometrics").deployment["spec"]["template"]["spec"]
    assert intel["containers"][0]["resources"] == {"limits": {"gpu.intel.com/i915": 1}}


def test_hardening_and_probes() -> None:
    pod = rendered("minimal").deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    tls = rendered("gpu-pvc-tls").deployment["spec"]["template"]["spec"]["containers"][0]
    assert tls["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_prometheus_annotations_follow_metrics_switch() -> None:
    on = rendered("minimal").deployment["spec"]["template"]["metadata"]["annotations"]
    assert on["prometheus.io/scrape"] == "true" and on["prometheus.io/port"] == "8081"
    off = rendered("intel-gpu-hostpath-nometrics").deployment["spec"]["template"]["metadata"]
    assert "annotations" not in off
    args = rendered("intel-gpu-hostpath-nometrics").deployment["spec"]["template"]["spec"][
        "containers"][0]["args"]
    assert "--metrics_enable" not in args


def test_children_are_owned_by_the_server() -> None:
    out = rendered("minimal")
    for obj in (out.config_map, out.deployment, out.service):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "ovserve.io/v1alpha1", "kind": "InferenceServer",
                         "name": "srv", "uid": "uid-srv", "controller": True,
                         "blockOwnerDeletion": True}


def test_clashing_model_names_keep_the_oldest_and_skip_deleted() -> None:
    older = model_body("a", server="srv", modelName="same", created="2026-01-01T00:00:00Z")
    newer = model_body("b", server="srv", modelName="same", created="2026-02-01T00:00:00Z")
    gone = model_body("c", server="srv", modelName="other")
    gone["metadata"]["deletionTimestamp"] = "2026-03-01T00:00:00Z"
    other_server = model_body("d", server="elsewhere")
    out = rendered("minimal", [newer, older, gone, other_server])
    assert [m.name for m in out.models] == ["a"]
    assert "already served by InferenceModel 'a'" in out.rejected["b"]
    assert "c" not in out.rejected


def test_empty_server_renders_an_empty_model_list() -> None:
    out = rendered("minimal", [])
    assert parse_config(out.config, base_dir="/").models == ()


# ------------------------------------------------------------ pod knobs (issue 13, items 8-10)


def test_empty_image_means_the_operators_server_image() -> None:
    body = server_body("srv", image="")
    assert ServerSpec.from_body(body, "example.org/ovserve-server:9").image == \
        "example.org/ovserve-server:9"
    no_image = server_body("srv")
    assert ServerSpec.from_body(no_image).image == render_default_image()
    pinned = server_body("srv", image="mine:1")
    assert ServerSpec.from_body(pinned, "example.org/ovserve-server:9").image == "mine:1"


def render_default_image() -> str:
    from ovserve.operator.resources import DEFAULT_IMAGE
    return DEFAULT_IMAGE


def test_pod_knobs_reach_the_pod() -> None:
    out = rendered("openshift-knobs")
    pod = out.deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "runAsUser" not in pod["securityContext"]  # OpenShift assigns the UID
    assert pod["securityContext"]["supplementalGroups"] == [110]
    assert pod["priorityClassName"] == "inference-critical"
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["labelSelector"] == {"matchLabels": render.selector_labels(
        ServerSpec.from_body(server_body("srv")))}
    assert [e["name"] for e in container["env"]] == ["OV_LOG", "NODE"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}, "prefix": "S3_"}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["extra"] == "/extra" and mounts["cache"] == "/cache"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["hostPath"] == {"path": "/var/cache/ovserve",
                                            "type": "DirectoryOrCreate"}
    args = container["args"]
    assert args[args.index("--cache_dir") + 1] == "/cache"
    assert args[args.index("--drain_seconds") + 1] == "20"
    assert pod["terminationGracePeriodSeconds"] == 20 + 30 + 5


def test_drain_and_grace_period_defaults() -> None:
    pod = rendered("minimal").deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--drain_seconds") + 1] == "10"
    assert pod["terminationGracePeriodSeconds"] == 45
    assert "--cache_dir" not in args


def test_pdb_only_with_more_than_one_replica() -> None:
    assert rendered("minimal").pdb is None
    many = rendered("gpu-pvc-tls").pdb
    assert many is not None and many["spec"]["maxUnavailable"] == 1
    assert many["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "srv"
    off = ServerSpec.from_body(server_body("srv", replicas=3,
                                           podDisruptionBudget={"enabled": False}))
    assert render.pod_disruption_budget(off) is None
    knobs = rendered("openshift-knobs").pdb
    assert knobs is not None and knobs["spec"] == {
        "minAvailable": "50%", "selector": {"matchLabels": render.selector_labels(
            ServerSpec.from_body(server_body("srv")))}}


@pytest.mark.parametrize("source,expected", [
    ({"emptyDir": {"sizeLimit": "2Gi"}}, {"name": "cache", "emptyDir": {"sizeLimit": "2Gi"}}),
    ({"persistentVolumeClaim": {"claimName": "ov-cache"}, "mountPath": "/var/ov"},
     {"name": "cache", "persistentVolumeClaim": {"claimName": "ov-cache"}}),
])
def test_compile_cache_volumes(source: dict[str, Any], expected: dict[str, Any]) -> None:
    server = ServerSpec.from_body(server_body("srv", compileCache=source))
    deployment = render.deployment(server)
    pod = deployment["spec"]["template"]["spec"]
    assert expected in pod["volumes"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--cache_dir") + 1] == source.get("mountPath", "/cache")
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
