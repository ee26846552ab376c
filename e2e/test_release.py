"""End to end on kind: the Helm release itself. `helm test` passes, and `helm uninstall`
leaves nothing behind but the CRDs (which Helm never deletes, by design). The uninstall test
is marked to run after every other test of the session (see conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.timeout(900)

CRDS = {"inferenceservers.ovserve.io", "inferencemodels.ovserve.io"}


def test_helm_test_passes(cluster: Any, settings: Any, server_pods: list[Any], e2e: Any) -> None:
    with e2e.helm_config(settings) as cfg:
        result = cfg.test(settings.release, timeout=300, logs=True)
    assert "/v2/health/ready: 200" in result.get("logs", ""), result


def leftovers(cluster: Any, settings: Any) -> list[str]:
    """Every object the release or the operator made that still exists."""
    ns = settings.namespace
    instance = f"app.kubernetes.io/instance={settings.release}"
    found: list[str] = []
    found += [f"pod/{p.metadata.name}" for p in cluster.core.list_namespaced_pod(ns).items]
    found += [f"deployment/{d.metadata.name}"
              for d in cluster.apps.list_namespaced_deployment(ns).items]
    found += [f"service/{s.metadata.name}" for s in cluster.core.list_namespaced_service(ns).items]
    found += [f"configmap/{c.metadata.name}"
              for c in cluster.core.list_namespaced_config_map(ns).items
              if c.metadata.name != "kube-root-ca.crt"]
    found += [f"serviceaccount/{a.metadata.name}"
              for a in cluster.core.list_namespaced_service_account(ns).items
              if a.metadata.name != "default"]
    found += [f"secret/{s.metadata.name}" for s in cluster.core.list_namespaced_secret(ns).items
              if s.type == "helm.sh/release.v1"]
    found += [f"job/{j.metadata.name}" for j in cluster.batch.list_namespaced_job(ns).items]
    found += [f"role/{r.metadata.name}" for r in cluster.rbac.list_namespaced_role(ns).items]
    found += [f"rolebinding/{r.metadata.name}"
              for r in cluster.rbac.list_namespaced_role_binding(ns).items]
    found += [f"clusterrole/{r.metadata.name}"
              for r in cluster.rbac.list_cluster_role(label_selector=instance).items]
    found += [f"clusterrolebinding/{r.metadata.name}"
              for r in cluster.rbac.list_cluster_role_binding(label_selector=instance).items]
    for plural in ("inferenceservers", "inferencemodels"):
        items = cluster.custom.list_namespaced_custom_object("ovserve.io", "v1alpha1", ns, plural)
        found += [f"{plural}/{o['metadata']['name']}" for o in items["items"]]
    return found


@pytest.mark.uninstall
def test_uninstall_leaves_only_the_crds(cluster: Any, settings: Any, wait_for: Any,
                                        e2e: Any) -> None:
    before = leftovers(cluster, settings)
    assert any(x.startswith("deployment/") for x in before), before  # something to remove
    with e2e.helm_config(settings) as cfg:
        cfg.uninstall(settings.release, timeout=300)

    def nothing_left() -> bool | None:
        left = leftovers(cluster, settings)
        assert not left, f"still there: {left}"
        return True

    wait_for("everything of the release to be deleted", nothing_left, timeout=300)
    names = {c.metadata.name for c in cluster.ext.list_custom_resource_definition().items}
    assert names >= CRDS
