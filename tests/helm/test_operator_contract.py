"""The chart against the operator's own rendering: the default InferenceServer the chart creates
is accepted by the operator's decoder, and the ServiceMonitor and the `helm test` pod point at
the Service, labels and port the operator really renders for it (ovserve.operator.render)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ovserve.operator import render as operator_render
from ovserve.operator.resources import ServerSpec


def operator_view(rendered: Any) -> tuple[ServerSpec, dict[str, Any], dict[str, Any]]:
    body = dict(rendered.one("InferenceServer").obj)
    body["metadata"] = {**body["metadata"], "uid": "0000-test"}
    spec = ServerSpec.from_body(body)
    return spec, operator_render.service(spec), operator_render.deployment(spec)


def test_operator_accepts_every_scenario(render: Any, scenario: str, values_for: Any) -> None:
    spec, _, deployment = operator_view(render(values_for(scenario)))
    values = values_for(scenario).get("defaultServer", {})
    assert spec.name == values.get("name", "default")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    gpu = values.get("gpu", {})
    if gpu.get("count"):
        assert container["resources"]["limits"][gpu["resourceName"]] == gpu["count"]
    else:
        assert not any(k.startswith("gpu.") for k in container.get("resources", {}).get(
            "limits", {}))
    pod = deployment["spec"]["template"]["spec"]
    assert pod.get("nodeSelector", {}) == values.get("nodeSelector", {})
    assert pod.get("tolerations", []) == values.get("tolerations", [])


def test_service_monitor_selects_the_operator_service(render: Any, scenario_values: Any) -> None:
    rendered = render(scenario_values("metrics-values.yaml"))
    _, service, _ = operator_view(rendered)
    sm = rendered.one("ServiceMonitor").obj
    selector = sm["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert service["metadata"]["namespace"] == sm["metadata"]["namespace"]


def test_helm_test_pod_calls_the_operator_service(render: Any) -> None:
    rendered = render({"defaultServer": {"name": "pool", "restPort": 9000}})
    _, service, _ = operator_view(rendered)
    url = urlsplit(rendered.one("Pod").obj["spec"]["containers"][0]["args"][1])
    host, namespace, _ = str(url.hostname).split(".", 2)
    assert host == service["metadata"]["name"]
    assert namespace == service["metadata"]["namespace"]
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    assert url.path == "/v2/health/ready"
