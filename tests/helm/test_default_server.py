"""The default InferenceServer: values become its spec (GPU limits, node selection,
tolerations, storage, metrics), and the ServiceMonitor and test pod point at its Service."""

from __future__ import annotations

from typing import Any


def server_image_arg(rendered: Any) -> str:
    """The operator's --server-image: the image of every InferenceServer without spec.image."""
    container = rendered.one("Deployment").obj["spec"]["template"]["spec"]["containers"][0]
    (arg,) = [a for a in container["args"] if a.startswith("--server-image=")]
    return str(arg.split("=", 1)[1])


def server_spec(rendered: Any) -> dict[str, Any]:
    spec: dict[str, Any] = rendered.one("InferenceServer").obj["spec"]
    return spec


def test_cpu_default_requests_no_gpu(render: Any) -> None:
    rendered = render({})
    server = rendered.one("InferenceServer")
    assert server.name == "default"
    assert server.obj["metadata"]["namespace"] == "ovserve-system"
    spec = server_spec(rendered)
    assert "gpu" not in spec and "nodeSelector" not in spec and "tolerations" not in spec
    assert spec["replicas"] == 1
    # No spec.image: the pods run the operator's --server-image and follow chart upgrades.
    assert "image" not in spec
    assert server_image_arg(rendered) == "ghcr.io/ovserve-owner/ovserve-server:0.1.0"
    assert spec["restPort"] == 8081
    assert spec["metrics"] == {"enabled": True}
    assert spec["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}


def test_gpu_pool_reaches_the_server_spec(render: Any, scenario_values: Any) -> None:
    values = scenario_values("gpu-values.yaml")
    rendered = render(values)
    server = rendered.one("InferenceServer")
    assert server.name == "gpu-pool"
    spec = server_spec(rendered)
    assert spec["gpu"] == {"count": 1, "resourceName": "gpu.intel.com/i915"}
    assert spec["nodeSelector"] == {"intel.feature.node.kubernetes.io/gpu": "true"}
    assert spec["tolerations"] == [
        {"key": "gpu.intel.com/i915", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["replicas"] == 2
    assert spec["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert spec["storage"] == {"persistentVolumeClaim": {"claimName": "models"},
                               "subPath": "openvino"}


def test_other_gpu_resources_and_affinity_pass_through(render: Any) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "gpu.intel.com/family", "operator": "In", "values": ["A_Series"]}]}]}}}
    rendered = render({"defaultServer": {"gpu": {"count": 2, "resourceName": "gpu.intel.com/xe"},
                                         "affinity": affinity}})
    spec = server_spec(rendered)
    assert spec["gpu"] == {"count": 2, "resourceName": "gpu.intel.com/xe"}
    assert spec["affinity"] == affinity
    assert "2 x gpu.intel.com/xe" in rendered.notes


def test_storage_tls_and_extra_spec(render: Any) -> None:
    rendered = render({"defaultServer": {
        "storage": {"hostPath": {"path": "/srv/models"}, "mountPath": "/models"},
        "tlsSecretName": "server-tls",
        "image": {"repository": "example.local:5000/ml/ovserve-server", "tag": "1.2.3"},
        "extraSpec": {"serviceAccountName": "models-reader", "replicas": 3},
    }})
    spec = server_spec(rendered)
    assert spec["storage"] == {"hostPath": {"path": "/srv/models"}, "mountPath": "/models"}
    assert spec["tls"] == {"secretName": "server-tls"}
    assert server_image_arg(rendered) == "example.local:5000/ml/ovserve-server:1.2.3"
    assert spec["serviceAccountName"] == "models-reader"
    assert spec["replicas"] == 3  # extraSpec wins
    pod = rendered.one("Pod").obj
    assert pod["spec"]["containers"][0]["args"][1].startswith("https://default.")


def test_image_digest_wins_over_tag(render: Any) -> None:
    digest = "sha256:" + "ab" * 32
    rendered = render({"defaultServer": {"image": {"repository": "ovserve-server",
                                                   "tag": "x", "digest": digest}},
                       "operator": {"image": {"repository": "ovserve-operator",
                                              "digest": digest}}})
    assert server_image_arg(rendered) == f"ovserve-server@{digest}"
    container = rendered.one("Deployment").obj["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ovserve-operator@{digest}"


def test_metrics_scenario_adds_a_service_monitor(render: Any, scenario_values: Any) -> None:
    rendered = render(scenario_values("metrics-values.yaml"))
    sm = rendered.one("ServiceMonitor")
    assert sm.obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm.labels["release"] == "kube-prometheus-stack"
    # Every pool the operator renders, in every watched namespace (cluster scope: any).
    assert sm.obj["spec"]["namespaceSelector"] == {"any": True}
    assert sm.obj["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ovserve-server",
        "app.kubernetes.io/managed-by": "ovserve-operator"}
    (endpoint,) = sm.obj["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    spec = server_spec(rendered)
    assert spec["metrics"]["enabled"] is True
    assert "ovms_infer_req_queue_size" in spec["metrics"]["metricsList"]


def test_service_monitor_is_off_by_default(render: Any, scenario: str, values_for: Any) -> None:
    rendered = render(values_for(scenario))
    assert bool(rendered.of_kind("ServiceMonitor")) == (
        scenario in ("metrics-values.yaml", "monitoring-values.yaml"))


def test_helm_test_pod_checks_readiness_through_the_service(render: Any) -> None:
    pod = render({"defaultServer": {"name": "pool", "restPort": 9000}}).one("Pod").obj
    container = pod["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/ovserve-owner/ovserve-server:0.1.0"
    assert container["args"][1] == "http://pool.ovserve-system.svc:9000/v2/health/ready"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_operator_runs_non_root_with_a_liveness_probe(render: Any) -> None:
    dep = render({"operator": {"livenessPort": 9090, "logLevel": "DEBUG"}}).one("Deployment")
    pod = dep.obj["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["ports"] == [{"name": "health", "containerPort": 9090, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert "--liveness-port=9090" in container["args"]
    assert "--log-level=DEBUG" in container["args"]
    assert dep.obj["spec"]["strategy"] == {"type": "Recreate"}
    assert dep.obj["spec"]["replicas"] == 1


def test_service_monitor_follows_tls(render: Any) -> None:
    sm = render({"serviceMonitor": {"enabled": True},
                 "defaultServer": {"tlsSecretName": "tls"}}).one("ServiceMonitor")
    (endpoint,) = sm.obj["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    selector = sm.obj["spec"]["selector"]["matchLabels"]
    # labels the operator puts on the Service of every InferenceServer (test_observability.py
    # checks them against render.py)
    assert selector == {"app.kubernetes.io/name": "ovserve-server",
                        "app.kubernetes.io/managed-by": "ovserve-operator"}
    assert endpoint["port"] == "http"


def test_notes_warn_when_the_gpu_is_not_an_intel_one(render: Any, scenario_values: Any) -> None:
    nvidia = render({"defaultServer": {"gpu": {"count": 1, "resourceName": "nvidia.com/gpu"}}})
    assert "OpenVINO's \"GPU\" device is an" in nvidia.notes and "docs/gpu.md" in nvidia.notes
    intel = render(scenario_values("gpu-values.yaml"))
    assert "docs/gpu.md" not in intel.notes
    assert "1 x gpu.intel.com/i915 each" in intel.notes
