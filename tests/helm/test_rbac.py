"""RBAC: a ClusterRole or namespaced Roles by `rbac.scope`, rules grouped by what kopf needs
and what ovserve needs, least privilege (exactly what operator/ovserve/operator/kube.py and
handlers.py call), and an operator command line that watches what the RBAC allows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# (apiGroup, resource) -> verbs: the whole grant, nothing more.
EXPECTED = {
    # kopf: watch the custom resources, patch its finalizer and progress annotations, Events
    ("ovserve.io", "inferenceservers"): {"get", "list", "watch", "patch"},
    ("ovserve.io", "inferencemodels"): {"get", "list", "watch", "patch"},
    ("", "events"): {"create"},
    # ovserve: status, ownerReferences with blockOwnerDeletion, rendered children, pods
    ("ovserve.io", "inferenceservers/status"): {"patch"},
    ("ovserve.io", "inferencemodels/status"): {"patch"},
    ("ovserve.io", "inferenceservers/finalizers"): {"update"},
    ("", "configmaps"): {"get", "create", "patch"},
    ("", "services"): {"get", "create", "patch"},
    ("apps", "deployments"): {"get", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"get", "create", "patch", "delete"},
    ("", "pods"): {"list", "watch", "patch"},  # watch: pod readiness starts a pass
}


def rules_by_resource(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def operator_args(rendered: Any) -> list[str]:
    container = rendered.one("Deployment").obj["spec"]["template"]["spec"]["containers"][0]
    args: list[str] = container["args"]
    return args


def test_cluster_scope_uses_one_cluster_role(render: Any) -> None:
    rendered = render({})
    role = rendered.one("ClusterRole")
    assert role.name == "ovserve-system-ovserve-operator"
    assert rules_by_resource(role.obj["rules"]) == EXPECTED
    binding = rendered.one("ClusterRoleBinding").obj
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role.name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ovserve-operator",
                                    "namespace": "ovserve-system"}]
    assert "--all-namespaces" in operator_args(rendered)


def test_least_privilege(render: Any, scenario: str, values_for: Any) -> None:
    rendered = render(values_for(scenario))
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        if role.name.endswith("-cleanup"):
            continue
        got = rules_by_resource(role.obj["rules"])
        assert got == EXPECTED, role.name
        assert not any("*" in verbs for verbs in got.values())
        assert ("", "secrets") not in got and ("", "pods/proxy") not in got


def test_rules_are_grouped_with_comments(chart_dir: Path) -> None:
    text = (chart_dir / "templates" / "rbac.yaml").read_text()
    assert "# --- needed by kopf" in text and "# --- needed by ovserve" in text


def test_namespace_scope_uses_roles_only(render: Any, scenario_values: Any) -> None:
    rendered = render(scenario_values("namespaced-values.yaml"))
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")
    roles = [m for m in rendered.of_kind("Role") if not m.name.endswith("-cleanup")]
    assert {m.obj["metadata"]["namespace"] for m in roles} == {"ovserve-system", "team-a"}
    for role in roles:
        assert rules_by_resource(role.obj["rules"]) == EXPECTED
    bindings = [m for m in rendered.of_kind("RoleBinding") if not m.name.endswith("-cleanup")]
    assert {b.obj["metadata"]["namespace"] for b in bindings} == {"ovserve-system", "team-a"}
    for b in bindings:
        assert b.obj["subjects"] == [{"kind": "ServiceAccount", "name": "ovserve-operator",
                                      "namespace": "ovserve-system"}]
        assert b.obj["roleRef"]["kind"] == "Role"
    args = operator_args(rendered)
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=ovserve-system", "--namespace=team-a"]


def test_cluster_scope_can_watch_listed_namespaces(render: Any) -> None:
    rendered = render({"operator": {"watchNamespaces": ["a", "b"]}})
    args = operator_args(rendered)
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=a", "--namespace=b"]
    assert rendered.one("ClusterRole").kind == "ClusterRole"


def test_cleanup_hook_may_delete_only_the_default_server(render: Any) -> None:
    rendered = render({"defaultServer": {"name": "pool"}})
    (role,) = [m for m in rendered.of_kind("Role") if m.name.endswith("-cleanup")]
    assert role.obj["rules"] == [{"apiGroups": ["ovserve.io"], "resources": ["inferenceservers"],
                                  "resourceNames": ["pool"], "verbs": ["get", "delete"]}]
    job = rendered.one("Job").obj
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][1:] == [
        "ovserve-system", "pool", "120"]


def test_rbac_can_be_left_to_the_cluster_admin(render: Any) -> None:
    rendered = render({"rbac": {"create": False, "scope": "cluster"},
                       "serviceAccount": {"create": False, "name": "ops-sa"}})
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ServiceAccount")
    pod = rendered.one("Deployment").obj["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops-sa"
