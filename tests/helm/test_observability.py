"""Monitoring, alerts, dashboard and NetworkPolicy shipped by the chart (issue 13, items 11-12),
and the pod knobs passed to the default InferenceServer (item 9).

The selectors are checked against what the operator really renders (ovserve.operator.render),
the alerts against docs/metrics.md, the dashboard's queries against the metric families the
server exposes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ovserve.operator import render as operator_render
from ovserve.operator.resources import ModelSpec, ServerSpec
from ovserve.server.config import DEFAULT_METRICS, OPTIONAL_METRICS
from ovserve.server.metrics import CONFIG_INFO, CONFIG_RELOADS, VERSION_STATE

REPO = Path(__file__).resolve().parents[2]
SCENARIO = "monitoring-values.yaml"


def _pool(name: str, namespace: str = "ml-prod") -> operator_render.Rendered:
    body = {"metadata": {"name": name, "namespace": namespace, "uid": "u"},
            "spec": {"replicas": 2}}
    return operator_render.render_server(ServerSpec.from_body(body), list[ModelSpec]())


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_monitors_select_every_pool_the_operator_renders(render: Any,
                                                         scenario_values: Any) -> None:
    rendered = render(scenario_values(SCENARIO))
    sm = rendered.one("ServiceMonitor").obj["spec"]
    pm = rendered.one("PodMonitor").obj["spec"]
    for pool in (_pool("default"), _pool("gpu-pool"), _pool("batch")):
        service_labels = pool.service["metadata"]["labels"]
        pod_labels = pool.deployment["spec"]["template"]["metadata"]["labels"]
        assert _matches(sm["selector"]["matchLabels"], service_labels)
        assert _matches(pm["selector"]["matchLabels"], pod_labels)
        port_names = {p["name"] for p in pool.service["spec"]["ports"]}
        assert sm["endpoints"][0]["port"] in port_names
        container = pool.deployment["spec"]["template"]["spec"]["containers"][0]
        assert pm["podMetricsEndpoints"][0]["port"] in {p["name"] for p in container["ports"]}
        # the relabeling that gives every series a `server` label reads this pod label
        assert pod_labels[operator_render.SERVER_LABEL] == pool.deployment["metadata"]["name"]
    # a namespaced watch: only the watched namespaces (the release's and ml-prod)
    assert sm["namespaceSelector"] == {"matchNames": ["ovserve-system", "ml-prod"]}
    assert pm["namespaceSelector"] == {"matchNames": ["ovserve-system", "ml-prod"]}
    relabel = pm["podMetricsEndpoints"][0]["relabelings"][0]
    assert relabel == {"sourceLabels": ["__meta_kubernetes_pod_label_ovserve_io_server"],
                       "targetLabel": "server"}
    assert pm["podMetricsEndpoints"][0]["interval"] == "15s"


def test_monitoring_objects_are_off_by_default(render: Any) -> None:
    kinds = render({}).kinds()
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy"}
    assert [m for m in render({}).of_kind("ConfigMap") if m.name.endswith("-dashboard")] == []


def _doc_alerts() -> dict[str, dict[str, Any]]:
    text = (REPO / "docs" / "metrics.md").read_text()
    block = re.search(r"Alerts \(Prometheus rule file\):\n\n```yaml\n(.*?)```", text, re.S)
    assert block, "docs/metrics.md lost its alerts block"
    (group,) = yaml.safe_load(block.group(1))["groups"]
    return {r["alert"]: r for r in group["rules"]}


def test_prometheus_rule_has_the_alerts_docs_metrics_md_describes(
        render: Any, scenario_values: Any) -> None:
    rule = render(scenario_values(SCENARIO)).one("PrometheusRule")
    assert rule.labels["release"] == "kube-prometheus-stack"
    (group,) = rule.obj["spec"]["groups"]
    alerts = {r["alert"]: r for r in group["rules"]}
    documented = _doc_alerts()
    assert set(alerts) == set(documented)
    for name, doc in documented.items():
        assert alerts[name]["expr"] == doc["expr"], name
        assert alerts[name].get("for") == doc.get("for"), name
        assert alerts[name]["labels"] == {"severity": "critical"}
    # Prometheus templates survive Helm's templating unrendered
    assert "{{ $labels.name }}" in alerts["OvserveModelLoadFailed"]["annotations"]["summary"]


def test_prometheus_rule_takes_extra_rules_and_durations(render: Any) -> None:
    extra = {"alert": "OvserveSlow", "expr": "histogram_quantile(0.99, "
             "sum by (le) (rate(ovms_request_time_us_bucket[5m]))) > 1e6"}
    rule = render({"prometheusRule": {"enabled": True, "additionalRules": [extra],
                                      "for": {"configDrift": "30m"}}}).one("PrometheusRule")
    rules = {r["alert"]: r for r in rule.obj["spec"]["groups"][0]["rules"]}
    assert rules["OvserveSlow"] == extra
    assert rules["OvserveConfigDrift"]["for"] == "30m"
    assert rules["OvserveModelLoadFailed"]["for"] == "5m"


def _dashboard(render: Any, scenario_values: Any) -> tuple[Any, dict[str, Any]]:
    (cm,) = [m for m in render(scenario_values(SCENARIO)).of_kind("ConfigMap")
             if m.name.endswith("-dashboard")]
    return cm, json.loads(cm.obj["data"]["ovserve.json"])


def test_dashboard_config_map_is_picked_up_by_grafana(render: Any,
                                                      scenario_values: Any) -> None:
    cm, dash = _dashboard(render, scenario_values)
    assert cm.labels["grafana_dashboard"] == "1"
    assert cm.annotations == {"grafana_folder": "ovserve"}
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_query_real_families_through_the_datasource_variable(
        render: Any, scenario_values: Any) -> None:
    _, dash = _dashboard(render, scenario_values)
    families = {*DEFAULT_METRICS, *OPTIONAL_METRICS, VERSION_STATE, CONFIG_INFO,
                f"{CONFIG_RELOADS}_total"}
    used: set[str] = set()
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            for name in re.findall(r"\b(ovms_[a-z_]+|ovserve_[a-z_]+)\b", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in families, f"{panel['title']}: unknown metric {name}"
                used.add(base)
    # the OVMS panels plus ovserve's own: version state, reloads, config hash
    assert {"ovms_requests_success", "ovms_request_time_us", "ovms_current_requests",
            "ovms_streams"} <= used
    assert {VERSION_STATE, CONFIG_INFO, f"{CONFIG_RELOADS}_total"} <= used


def test_network_policy_admits_operator_prometheus_and_clients(render: Any,
                                                               scenario_values: Any) -> None:
    values = scenario_values(SCENARIO)
    rendered = render(values)
    policies = rendered.of_kind("NetworkPolicy")
    # one per watched namespace: where InferenceServers can be
    assert [p.obj["metadata"]["namespace"] for p in policies] == ["ovserve-system", "ml-prod"]
    assert policies[0].obj["spec"] == policies[1].obj["spec"]
    spec = policies[1].obj["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    pool = _pool("any-pool")
    assert _matches(spec["podSelector"]["matchLabels"],
                    pool.deployment["spec"]["template"]["metadata"]["labels"])
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    peers = rule["from"]
    operator_pod = rendered.one("Deployment").obj["spec"]["template"]["metadata"]["labels"]
    assert _matches(peers[0]["podSelector"]["matchLabels"], operator_pod)
    assert peers[0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ovserve-system"}
    test_pod = rendered.one("Pod").obj["metadata"]["labels"]
    assert _matches(peers[1]["podSelector"]["matchLabels"], test_pod)
    assert peers[2] == values["networkPolicy"]["prometheus"]
    assert peers[3:] == values["networkPolicy"]["clients"]


def test_network_policy_namespaces(render: Any) -> None:
    one = render({"networkPolicy": {"enabled": True}}).of_kind("NetworkPolicy")
    assert [p.obj["metadata"]["namespace"] for p in one] == ["ovserve-system"]
    many = render({"networkPolicy": {"enabled": True, "namespaces": ["a", "b", "a"]},
                   "tests": {"enabled": False}}).of_kind("NetworkPolicy")
    assert [p.obj["metadata"]["namespace"] for p in many] == ["a", "b"]
    (peer,) = many[0].obj["spec"]["ingress"][0]["from"]  # the operator alone
    assert "podSelector" in peer


def test_pod_knobs_reach_the_default_server(render: Any, scenario_values: Any,
                                            crd_schema: Any) -> None:
    spec = render(scenario_values(SCENARIO)).one("InferenceServer").obj["spec"]
    assert spec["drainSeconds"] == 15
    assert spec["compileCache"] == {"emptyDir": {"sizeLimit": "2Gi"}}
    assert spec["podDisruptionBudget"] == {"maxUnavailable": 1}
    server = ServerSpec.from_body({"metadata": {"name": "default", "namespace": "ml-prod"},
                                   "spec": spec})
    pdb = operator_render.pod_disruption_budget(server)
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    assert server.termination_grace_seconds == 15 + 35
    defaults = render({}).one("InferenceServer").obj["spec"]
    assert defaults["drainSeconds"] == 10
    assert not {"podSecurityContext", "securityContext", "compileCache", "env",
                "volumes"} & set(defaults)


@pytest.mark.parametrize("values,where", [
    ({"defaultServer": {"drainSeconds": 601}}, "/defaultServer/drainSeconds"),
    ({"defaultServer": {"volumes": [{"name": "config", "emptyDir": {}}]}},
     "/defaultServer/volumes/0/name"),
    ({"defaultServer": {"compileCache": {"nfs": {}}}}, "/defaultServer/compileCache"),
    ({"networkPolicy": {"clients": [{"pods": {}}]}}, "/networkPolicy/clients/0"),
    ({"podMonitor": {"scheme": "ftp"}}, "/podMonitor/scheme"),
    ({"prometheusRule": {"for": {"configDrift": "ten minutes"}}},
     "/prometheusRule/for/configDrift"),
])
def test_schema_refuses_bad_values(render: Any, values: dict[str, Any], where: str) -> None:
    with pytest.raises(Exception) as err:
        render(values)
    assert where in str(err.value)


def test_monitors_need_no_default_server(render: Any) -> None:
    # They cover every pool, so a release without the default server still gets them.
    rendered = render({"defaultServer": {"enabled": False}, "serviceMonitor": {"enabled": True},
                       "podMonitor": {"enabled": True}})
    assert rendered.one("ServiceMonitor") and rendered.one("PodMonitor")
