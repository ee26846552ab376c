"""Labels and selectors follow the chart checklist: app.kubernetes.io/* everywhere, stable
selectors (no chart version, no app version), every selector matching its pod template."""

from __future__ import annotations

from typing import Any

STANDARD = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart")
UNSTABLE = ("helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by")


def test_every_object_carries_the_standard_labels(render: Any, scenario: str,
                                                  values_for: Any) -> None:
    for m in render(values_for(scenario)).manifests:
        missing = [k for k in STANDARD if k not in m.labels]
        assert not missing, f"{m.kind}/{m.name} lacks {missing}"
        assert m.labels["app.kubernetes.io/instance"] == "ovserve"
        assert m.labels["app.kubernetes.io/managed-by"] == "Helm"


def test_operator_selector_is_stable_and_matches_its_pods(render: Any, scenario: str,
                                                          values_for: Any) -> None:
    dep = render(values_for(scenario)).one("Deployment").obj
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "ovserve",
        "app.kubernetes.io/instance": "ovserve",
        "app.kubernetes.io/component": "operator",
    }
    assert not set(selector) & set(UNSTABLE)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()


def test_selector_does_not_change_with_the_chart_or_image_version(render: Any) -> None:
    before = render({}).one("Deployment").obj["spec"]["selector"]
    after = render({"operator": {"image": {"tag": "9.9.9"}}}).one("Deployment").obj
    assert after["spec"]["selector"] == before
    assert after["metadata"]["labels"]["app.kubernetes.io/version"] == "9.9.9"


def test_common_labels_reach_every_object_but_no_selector(render: Any) -> None:
    rendered = render({"commonLabels": {"team": "ml"}})
    assert all(m.labels.get("team") == "ml" for m in rendered.manifests)
    assert "team" not in rendered.one("Deployment").obj["spec"]["selector"]["matchLabels"]


def test_hook_and_test_pods_are_annotated(render: Any) -> None:
    rendered = render({})
    job = rendered.one("Job")
    assert job.annotations["helm.sh/hook"] == "pre-delete"
    pod = rendered.one("Pod")
    assert pod.annotations["helm.sh/hook"] == "test"
    assert pod.template.endswith("templates/tests/test-ready.yaml")
