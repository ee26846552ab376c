"""Decoding InferenceServer / InferenceModel objects: defaults, OVMS entries, refused specs."""

from __future__ import annotations

from typing import Any

import pytest
from operator_fakes import model_body, server_body

from ovserve.operator.resources import ModelSpec, ServerSpec, SpecError
from ovserve.server.config import VersionPolicy


def test_server_defaults_match_the_crd() -> None:
    server = ServerSpec.from_body(server_body())
    assert (server.name, server.namespace, server.uid) == ("default", "ml", "uid-default")
    assert server.replicas == 1
    assert server.image == "ovserve-server:0.1.0"
    assert server.rest_port == 8081
    assert server.gpu_count == 0 and server.gpu_resource == "gpu.intel.com/i915"
    assert server.metrics_enabled is True
    assert server.log_level == "INFO" and server.poll_seconds == 1
    assert server.storage is None and server.mount_path == "/models"
    assert server.scheme == "http"


def test_server_full_spec() -> None:
    server = ServerSpec.from_body(server_body(
        replicas=3, gpu={"count": 2, "resourceName": "nvidia.com/gpu"},
        storage={"persistentVolumeClaim": {"claimName": "models"}, "subPath": "repo",
                 "mountPath": "/data"},
        tls={"secretName": "server-tls"}, nodeSelector={"gpu": "yes"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    ))
    assert server.replicas == 3
    assert (server.gpu_count, server.gpu_resource) == (2, "nvidia.com/gpu")
    assert server.storage is not None
    assert (server.storage.claim_name, server.storage.sub_path) == ("models", "repo")
    assert server.mount_path == "/data"
    assert server.scheme == "https"
    assert server.tolerations[0]["effect"] == "NoSchedule"


def test_model_defaults() -> None:
    model = ModelSpec.from_body(model_body("resnet"))
    assert model.server == "default"
    assert model.model_name == "resnet" and model.base_path == "resnet"
    assert model.target_device == "CPU"
    assert model.version_policy == VersionPolicy("latest", num_versions=1)
    assert model.config_entry("/models") == {
        "name": "resnet",
        "base_path": "/models/resnet",
        "target_device": "CPU",
        "model_version_policy": {"latest": {"num_versions": 1}},
    }


def test_model_entry_carries_every_ovms_field_in_snake_case() -> None:
    model = ModelSpec.from_body(model_body(
        "r", server="gpu-pool", modelName="resnet50", basePath="vision/resnet50",
        targetDevice="AUTO:GPU,CPU", versionPolicy={"specific": {"versions": [3, 1, 3]}},
        batchSize="auto", inputShapes={"data": "(1,3,-1,-1)"}, layout="NHWC:NCHW", nireq=4,
        pluginConfig={"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 2},
    ))
    assert model.server == "gpu-pool"
    assert model.config_entry("/mnt") == {
        "name": "resnet50",
        "base_path": "/mnt/vision/resnet50",
        "target_device": "AUTO:GPU,CPU",
        "model_version_policy": {"specific": {"versions": [1, 3]}},
        "batch_size": "auto",
        "shape": {"data": "(1,3,-1,-1)"},
        "layout": "NHWC:NCHW",
        "nireq": 4,
        "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 2},
    }


def test_version_policies() -> None:
    def policy(value: Any) -> VersionPolicy:
        return ModelSpec.from_body(model_body(versionPolicy=value)).version_policy

    assert policy({"all": {}}) == VersionPolicy("all")
    assert policy({"latest": {"numVersions": 3}}) == VersionPolicy("latest", num_versions=3)
    assert policy({"latest": {}}) == VersionPolicy("latest", num_versions=1)


def test_deletion_and_generation_are_read() -> None:
    body = model_body()
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    body["metadata"]["generation"] = 7
    model = ModelSpec.from_body(body)
    assert model.deleting and model.generation == 7


# Specs a CRD schema lets through (or an API server without validation would store) that the
# operator refuses, each with the field named in the message.
MODEL_ERRORS = [
    ({"basePath": "a/../../etc"}, "spec.basePath: 'a/../../etc' must stay inside"),
    ({"modelName": "a..b"}, "spec.modelName: 'a..b' must not contain '..'"),
    ({"shape": "(1,3)", "inputShapes": {"x": "(1,3)"}}, "give either shape or inputShapes"),
    ({"layout": "NC", "inputLayouts": {"x": "NC"}}, "give either layout or inputLayouts"),
    ({"shape": "(1,0,3)"}, "spec.shape: dimension 0 must be positive or -1"),
    ({"shape": "(1,30:20)"}, "spec.shape: range 30:20 has its lower bound above"),
    ({"targetDevice": "gpu"}, "spec.targetDevice: expected a device name"),
    ({"versionPolicy": {"all": {}, "latest": {}}}, "give exactly one of all, latest, specific"),
    ({"versionPolicy": {"specific": {"versions": []}}}, "spec.versionPolicy.specific.versions"),
    ({"batchSize": "big"}, 'spec.batchSize: expected an integer or "auto"'),
    ({"nireq": -1}, "spec.nireq: -1 is outside 0..100000"),
    ({"server": "Bad_Name"}, "spec.server: 'Bad_Name' is not an InferenceServer name"),
    ({"pluginConfig": {"X": [1]}}, "spec.pluginConfig.X: expected a string or integer"),
]


@pytest.mark.parametrize(("spec", "message"), MODEL_ERRORS,
                         ids=[m[:30] for _, m in MODEL_ERRORS])
def test_model_spec_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        ModelSpec.from_body(model_body(**spec))
    assert message in str(err.value)


SERVER_ERRORS = [
    ({"storage": {"persistentVolumeClaim": {"claimName": "a"}, "hostPath": {"path": "/m"}}},
     "give exactly one of persistentVolumeClaim and hostPath"),
    ({"storage": {"hostPath": {"path": "/m"}, "mountPath": "/config"}},
     "spec.storage.mountPath: '/config' is used by the server itself"),
    ({"storage": {"hostPath": {"path": "/m"}, "subPath": "../x"}},
     "spec.storage.subPath: '../x' must be a relative path"),
    ({"gpu": {"count": 1}, "resources": {"limits": {"gpu.intel.com/i915": 1}}},
     "GPUs are requested with spec.gpu"),
    ({"gpu": {"resourceName": "nvidia"}}, "spec.gpu.resourceName: 'nvidia' is not"),
    ({"replicas": -1}, "spec.replicas: -1 is outside 0..1000"),
    ({"logLevel": "LOUD"}, "spec.logLevel: 'LOUD' is not one of TRACE"),
    ({"restPort": 80}, "spec.restPort: 80 is outside 1024..65535"),
    # Pod knobs (issue 13, item 9)
    ({"podSecurityContext": {"runAsUser": "root"}},
     "spec.podSecurityContext.runAsUser: expected an integer, got 'root'"),
    ({"podSecurityContext": {"runAsNonRoot": True, "runAsUser": 0}},
     "spec.podSecurityContext: runAsNonRoot is true but runAsUser is 0"),
    ({"podSecurityContext": {"supplementalGroups": ["render"]}},
     "spec.podSecurityContext.supplementalGroups: expected an array of group ids"),
    ({"podSecurityContext": {"privileged": True}},
     "spec.podSecurityContext.privileged: unknown field (allowed: appArmorProfile"),
    ({"securityContext": {"capabilities": {"keep": ["NET_ADMIN"]}}},
     "spec.securityContext.capabilities.keep: unknown field (allowed: add, drop)"),
    ({"securityContext": {"readOnlyRootFilesystem": "yes"}},
     "spec.securityContext.readOnlyRootFilesystem: expected a boolean, got 'yes'"),
    ({"topologySpreadConstraints": [{"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]},
     "spec.topologySpreadConstraints[0].maxSkew: required"),
    ({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                     "whenUnsatisfiable": "Sometimes"}]},
     "spec.topologySpreadConstraints[0].whenUnsatisfiable: 'Sometimes' is not one of"),
    ({"topologySpreadConstraints": [{"maxSkew": 0, "topologyKey": "zone",
                                     "whenUnsatisfiable": "ScheduleAnyway"}]},
     "spec.topologySpreadConstraints[0].maxSkew: 0 is outside 1..1000"),
    ({"priorityClassName": "High_Priority"},
     "spec.priorityClassName: 'High_Priority' is not a PriorityClass name"),
    ({"env": [{"name": "A=B", "value": "1"}]},
     "spec.env[0].name: 'A=B' is not a valid environment variable name"),
    ({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
     "spec.env[1].name: 'A' is given twice"),
    ({"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]},
     "spec.env[0]: give value or valueFrom, not both"),
    ({"env": [{"name": "A", "value": 1}]}, "spec.env[0].value: expected a string, got 1"),
    ({"envFrom": [{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}]},
     "spec.envFrom[0]: give exactly one of configMapRef and secretRef"),
    ({"volumes": [{"name": "config", "emptyDir": {}}]},
     "spec.volumes[0].name: 'config' is a volume the operator renders itself"),
    ({"volumes": [{"name": "x", "emptyDir": {}, "configMap": {"name": "y"}}]},
     "spec.volumes[0]: give exactly one volume source"),
    ({"volumes": [{"name": "Data", "emptyDir": {}}]}, "spec.volumes[0].name: 'Data' is not"),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
     "spec.volumeMounts[0].name: 'nope' is not a volume in spec.volumes (known: none)"),
    ({"volumes": [{"name": "x", "emptyDir": {}}],
      "volumeMounts": [{"name": "x", "mountPath": "/models"}]},
     "spec.volumeMounts[0].mountPath: '/models' is used by the server itself"),
    ({"volumes": [{"name": "x", "emptyDir": {}}],
      "volumeMounts": [{"name": "x", "mountPath": "relative"}]},
     "spec.volumeMounts[0].mountPath: 'relative' must be an absolute path"),
    ({"compileCache": {"emptyDir": {}, "hostPath": {"path": "/c"}}},
     "spec.compileCache: give exactly one of persistentVolumeClaim, hostPath, emptyDir"),
    ({"compileCache": {"emptyDir": {}, "mountPath": "/tmp"}},
     "spec.compileCache.mountPath: '/tmp' must be an absolute path not used by the server"),
    ({"compileCache": {"hostPath": {"path": "cache"}}},
     "spec.compileCache.hostPath.path: 'cache' must be an absolute path"),
    ({"compileCache": {"emptyDir": {}},
      "volumes": [{"name": "x", "emptyDir": {}}],
      "volumeMounts": [{"name": "x", "mountPath": "/cache"}]},
     "spec.volumeMounts[0].mountPath: '/cache' is used by the server itself"),
    ({"podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}},
     "spec.podDisruptionBudget: give maxUnavailable or minAvailable, not both"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}},
     "spec.podDisruptionBudget.maxUnavailable: 0 would block every node drain"),
    ({"podDisruptionBudget": {"minAvailable": "150%"}},
     "spec.podDisruptionBudget.minAvailable: expected an integer >= 0 or a percentage"),
    ({"drainSeconds": 601}, "spec.drainSeconds: 601 is outside 0..600"),
]


@pytest.mark.parametrize(("spec", "message"), SERVER_ERRORS,
                         ids=[m[:30] for _, m in SERVER_ERRORS])
def test_server_spec_errors_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        ServerSpec.from_body(server_body(**spec))
    assert message in str(err.value)


def test_server_name_must_fit_its_children() -> None:
    with pytest.raises(SpecError, match="must be a DNS label of at most 56"):
        ServerSpec.from_body(server_body(name="x" * 57))
