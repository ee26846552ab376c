"""values.schema.json and the templates refuse bad values before anything reaches a cluster,
with a message that names the key and what is wrong. Also: every ci/ scenario and the
defaults pass the schema, and the schema keeps up with values.yaml."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REFUSED = [
    pytest.param({"rbac": {"scope": "cluster-wide"}},
                 "at '/rbac/scope': value must be one of 'cluster', 'namespace'", id="rbac-scope"),
    pytest.param({"defaultServer": {"gpu": {"count": -1}}},
                 "at '/defaultServer/gpu/count': minimum: got -1, want 0", id="gpu-negative"),
    pytest.param({"defaultServer": {"gpu": {"count": "1"}}},
                 "at '/defaultServer/gpu/count': got string, want integer", id="gpu-string"),
    pytest.param({"defaultServer": {"gpu": {"count": 1, "resourceName": "nvidia"}}},
                 "at '/defaultServer/gpu/resourceName': 'nvidia' does not match pattern",
                 id="gpu-resource-name"),
    pytest.param({"defaultServer": {"replicas": 1.5}},
                 "at '/defaultServer/replicas': got number, want integer", id="replicas-float"),
    pytest.param({"defaultServer": {"restPort": 80}},
                 "at '/defaultServer/restPort': minimum: got 80, want 1,024", id="privileged-port"),
    pytest.param({"defaultServer": {"name": "Default"}},
                 "at '/defaultServer/name': 'Default' does not match pattern", id="server-name"),
    pytest.param({"defaultServer": {"logLevel": "verbose"}},
                 "at '/defaultServer/logLevel': value must be one of 'TRACE', 'DEBUG', 'INFO'",
                 id="log-level"),
    pytest.param({"defaultServer": {"tolerations": [{"key": "a", "operator": "Maybe"}]}},
                 "at '/defaultServer/tolerations/0/operator': value must be one of 'Exists', "
                 "'Equal'", id="toleration-operator"),
    pytest.param({"defaultServer": {"metrics": {"enabled": True, "metricsList": ["ovms_x"]}}},
                 "at '/defaultServer/metrics/metricsList/0': value must be one of", id="metric"),
    pytest.param({"defaultServer": {"replica": 2}},
                 "at '/defaultServer': additional properties 'replica' not allowed", id="typo"),
    pytest.param({"defaultServer": {"storage": {"hostPath": {"path": "srv/models"}}}},
                 "at '/defaultServer/storage/hostPath/path': 'srv/models' does not match pattern",
                 id="relative-host-path"),
    pytest.param({"defaultServer": {"resources": {"limits": {"memory": "lots"}}}},
                 "at '/defaultServer/resources/limits/memory': 'lots' does not match pattern",
                 id="quantity"),
    pytest.param({"operator": {"watchNamespaces": ["Team_A"]}},
                 "at '/operator/watchNamespaces/0': 'Team_A' does not match pattern",
                 id="namespace-name"),
    pytest.param({"operator": {"image": {"repository": "ovserve-operator:1.0"}}},
                 "at '/operator/image/repository'", id="tag-in-repository"),
    pytest.param({"operator": {"image": {"repository": "o", "digest": "sha256:abc"}}},
                 "at '/operator/image/digest'", id="short-digest"),
    pytest.param({"replicaCount": 2},
                 "additional properties 'replicaCount' not allowed", id="unknown-top-level"),
]

REFUSED_BY_TEMPLATES = [
    pytest.param({"defaultServer": {"storage": {"persistentVolumeClaim": {"claimName": "m"},
                                                "hostPath": {"path": "/m"}}}},
                 "defaultServer.storage: give exactly one of persistentVolumeClaim and hostPath",
                 id="two-volumes"),
    pytest.param({"defaultServer": {"storage": {"mountPath": "/m"}}},
                 "defaultServer.storage needs persistentVolumeClaim or hostPath", id="no-volume"),
    pytest.param({"serviceMonitor": {"enabled": True},
                  "defaultServer": {"metrics": {"enabled": False}}},
                 "serviceMonitor.enabled needs defaultServer.metrics.enabled: true",
                 id="monitor-without-metrics"),
    pytest.param({"podMonitor": {"enabled": True},
                  "defaultServer": {"metrics": {"enabled": False}}},
                 "podMonitor.enabled needs defaultServer.metrics.enabled: true",
                 id="pod-monitor-without-metrics"),
]


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_schema_refuses(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(values, name="ovserve", namespace="ns", is_install=True)
    assert message in str(err.value)
    assert "values don't meet the specifications of the schema" in str(err.value)


@pytest.mark.parametrize(("values", "message"), REFUSED)
def test_lint_reports_the_same_refusal(chart_dir: Path, values: dict[str, Any],
                                       message: str) -> None:
    report = helm.lint(chart_dir, values, strict=True)
    assert any(message in e for e in report["errors"]), report["errors"]


@pytest.mark.parametrize(("values", "message"), REFUSED_BY_TEMPLATES)
def test_templates_refuse(chart: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as err:
        chart.render(values, name="ovserve", namespace="ns", is_install=True)
    assert message in str(err.value)


def test_scenarios_pass_the_schema(chart: Any, scenario: str, values_for: Any) -> None:
    chart.validate_schema(values_for(scenario))
    chart.validate_schema(chart.merge_values(values_for(scenario)))


def test_schema_describes_every_default_value(chart_dir: Path) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())

    def walk(node: dict[str, Any], sch: dict[str, Any], path: str) -> int:
        props = sch.get("properties", {})
        seen = 0
        for key, value in node.items():
            assert key in props, f"{path}{key} is in values.yaml but not in values.schema.json"
            seen += 1
            if isinstance(value, dict) and props[key].get("additionalProperties") is False:
                seen += walk(value, props[key], f"{path}{key}.")
        return seen

    assert walk(values, schema, "") > 40


def test_gpu_resource_pattern_matches_the_crd(chart_dir: Path, crd_schema: Any) -> None:
    ours = json.loads((chart_dir / "values.schema.json").read_text())
    gpu = ours["properties"]["defaultServer"]["properties"]["gpu"]["properties"]
    crd = crd_schema("InferenceServer")["properties"]["spec"]["properties"]["gpu"]["properties"]
    assert gpu["resourceName"]["pattern"] == crd["resourceName"]["pattern"]
    assert gpu["count"]["maximum"] == crd["count"]["maximum"]
