"""InferenceModel.spec.storageUri / storageSecret: decoding, the config entry, and how the
credentials of several models reach one server's pods (one Secret per provider per server)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from operator_fakes import model_body, server_body

from ovserve.operator import render
from ovserve.operator.resources import ModelSpec, ServerSpec, SpecError
from ovserve.server.config import parse_config

K8S_VERSION = "1.30.0"


def model(name: str, created: str = "2026-01-01T00:00:00Z", **spec: Any) -> ModelSpec:
    return ModelSpec.from_body(model_body(name, created=created, **{"server": "srv", **spec}))


def rendered(*models: ModelSpec, **server: Any) -> render.Rendered:
    return render.render_server(ServerSpec.from_body(server_body("srv", **server)), list(models))


def container(out: render.Rendered) -> dict[str, Any]:
    (c,) = out.deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def test_storage_uri_becomes_the_base_path_as_written() -> None:
    m = model("resnet", storageUri="s3://models/vision/resnet50/", storageSecret="s3-creds")
    assert (m.storage_uri, m.storage_scheme, m.storage_secret) == (
        "s3://models/vision/resnet50", "s3", "s3-creds")
    out = rendered(m, storage={"persistentVolumeClaim": {"claimName": "repo"}})
    (entry,) = parse_config(out.config, base_dir="/").models
    assert entry.base_path == "s3://models/vision/resnet50"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"storageUri": "s3://models/m", "basePath": "m"}, "give either basePath"),
        ({"storageUri": "hdfs://cluster/m"}, "spec.storageUri: 'hdfs://cluster/m' is not an object storage URI"),
        ({"storageUri": "gcs://bucket/m"}, "is not an object storage URI"),
        ({"storageUri": "s3://Bad_Bucket/m"}, "is not an object storage URI"),
        ({"storageSecret": "creds"}, "spec.storageSecret: only used with spec.storageUri"),
        ({"storageUri": "gs://b-1/m", "storageSecret": "Not_A_Name"}, "spec.storageSecret: 'Not_A_Name' is not a valid Secret name"),
    ],
)
def test_refused_specs_name_the_field(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        model("m", **spec)
    assert message in str(err.value)


def test_each_provider_renders_its_credentials_into_the_pods() -> None:
    out = rendered(model("a", storageUri="s3://models/a", storageSecret="s3-creds"),
                   model("b", storageUri="gs://models/b", storageSecret="gcs-key"),
                   model("c", storageUri="az://models/c", storageSecret="azure-conn"))
    c = container(out)
    env = {e["name"]: e for e in c["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert env["S3_ENDPOINT"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "S3_ENDPOINT", "optional": True}
    assert set(env) >= set(render.S3_KEYS)
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/run/secrets/ovserve/gs/key.json"}
    assert env["AZURE_STORAGE_CONNECTION_STRING"]["valueFrom"]["secretKeyRef"] == {"name": "azure-conn", "key": "AZURE_STORAGE_CONNECTION_STRING"}
    volumes = {v["name"]: v for v in out.deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["gcs-credentials"]["secret"]["secretName"] == "gcs-key"
    assert {"name": "gcs-credentials", "mountPath": "/var/run/secrets/ovserve/gs", "readOnly": True} in c["volumeMounts"]
    assert out.rejected == {}
    for obj in (out.config_map, out.deployment, out.service):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_models_share_one_secret_per_provider_and_a_different_one_is_refused() -> None:
    first = model("first", "2026-01-01T00:00:00Z", storageUri="s3://models/a", storageSecret="team-a")
    same = model("same", "2026-01-02T00:00:00Z", storageUri="s3://other-bucket/b", storageSecret="team-a")
    none = model("none", "2026-01-03T00:00:00Z", storageUri="s3://models/c")
    clash = model("clash", "2026-01-04T00:00:00Z", storageUri="s3://models/d", storageSecret="team-b")
    gcs = model("gcs", "2026-01-05T00:00:00Z", storageUri="gs://models/e", storageSecret="team-b")
    out = rendered(clash, gcs, none, same, first)
    assert [m.name for m in out.models] == ["first", "gcs", "none", "same"]
    assert out.rejected == {"clash": (
        "spec.storageSecret: server 'srv' already reads s3:// with Secret 'team-a' (InferenceModel "
        "'first'); credentials are environment variables of the server's pods, so every s3:// "
        "model of one server uses the same Secret: use 'team-a', or serve this model from "
        "another InferenceServer")}
    assert out.reasons["clash"] == "StorageSecretConflict"
    names = sorted(m.name for m in parse_config(out.config, base_dir="/").models)
    assert names == ["first", "gcs", "none", "same"]


def test_a_model_reusing_the_servers_secret_does_not_roll_the_pods() -> None:
    one = rendered(model("a", storageUri="s3://models/a", storageSecret="creds"))
    two = rendered(model("a", storageUri="s3://models/a", storageSecret="creds"),
                   model("b", storageUri="s3://models/b", storageSecret="creds"),
                   model("c", basePath="c"))
    assert one.deployment["spec"]["template"] == two.deployment["spec"]["template"]
    assert one.config_hash != two.config_hash
    plain = rendered(model("c", basePath="c"))
    assert "env" not in container(plain)  # no storage secret: the pod template is as before
    assert plain.deployment["spec"]["template"] != one.deployment["spec"]["template"]


def test_a_storage_model_with_no_version_points_at_the_pods_error() -> None:
    from ovserve.operator import status
    from ovserve.operator.reload import HandshakeResult, PodReport

    spec = model("resnet", storageUri="s3://models/resnet50", storageSecret="creds")
    server = ServerSpec.from_body(server_body("srv"))
    result = HandshakeResult("a" * 64, (PodReport("p1", "a" * 64, True, {"resnet": ()}),))
    out = status.model_status(spec, server, result, status.Pool(1, 1, 1), "2026-05-01T10:00:00Z")
    assert out["state"] == "Failed"
    assert out["message"] == (
        "pod p1 serves no version of model 'resnet' from s3://models/resnet50: GET "
        "/v1/models/resnet on the pod gives the storage's error (wrong credentials, unreachable "
        "endpoint, no numbered version folder)")


def test_reconcile_fails_the_model_with_a_second_secret_and_renders_the_first(kube: Any, pods: Any) -> None:
    from ovserve.operator.reconcile import Reconciler, Settings

    kube.add(server_body())
    kube.add(model_body("first", created="2026-01-01T00:00:00Z", storageUri="s3://models/a",
                        storageSecret="team-a"))
    kube.add(model_body("second", created="2026-01-02T00:00:00Z", storageUri="s3://models/b",
                        storageSecret="team-b"))
    reconciler = Reconciler(kube, pods, Settings(reload_timeout=60, retry_delay=1, max_retry_delay=8),
                            clock=lambda: 1_000_000.0)
    outcome = reconciler.reconcile_server("ml", "default")
    assert outcome.states["second"] == "Failed"
    second = kube.models[("ml", "second")]["status"]
    assert "already reads s3:// with Secret 'team-a'" in second["message"]
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "StorageSecretConflict")
    deployment = next(obj for key, obj in kube.children.items() if obj["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env} == {"team-a"}


def test_handshake_reads_why_a_model_has_no_version_and_status_shows_it() -> None:
    from operator_fakes import FakePods, ovms_body

    from ovserve.operator import status
    from ovserve.operator.reload import PodTarget, check_pod

    url, expected = "http://10.0.0.1:8081", "a" * 64
    pods = FakePods()
    pods.applied[url] = expected
    pods.bodies[url] = ovms_body({"resnet": [], "add": [(1, "AVAILABLE", "OK", "OK")]})
    why = ("Cannot list s3://models/resnet50: InvalidAccessKeyId: The AWS Access Key Id you "
           "provided does not exist in our records.")
    pods.model_errors["resnet"] = why
    report = check_pod(PodTarget("p1", url), expected, pods)
    assert report.applied and report.model_errors == {"resnet": why}
    assert ("GET", f"{url}/v1/models/add") not in pods.calls  # only models with no version
    spec = model("resnet", storageUri="s3://models/resnet50", storageSecret="creds")
    server = ServerSpec.from_body(server_body("srv"))
    from ovserve.operator.reload import HandshakeResult

    out = status.model_status(spec, server, HandshakeResult(expected, (report,)),
                              status.Pool(1, 1, 1), "2026-05-01T10:00:00Z")
    assert (out["state"], out["message"]) == ("Failed", f"pod p1 serves no version of model 'resnet': {why}")


def test_a_reload_answered_400_with_the_new_hash_counts_as_applied() -> None:
    from operator_fakes import FakePods, ovms_body

    from ovserve.operator.reload import PodTarget, check_pod

    url, old, new = "http://10.0.0.1:8081", "b" * 64, "a" * 64
    pods = FakePods()
    pods.applied[url] = old
    pods.bodies[url] = ovms_body({"gone": []})
    pods.model_errors["gone"] = "The model base path does not exist or is not a directory: /models/gone"

    def reload_400(u: str) -> Any:
        from ovserve.operator.reload import PodReply

        pods.applied[u] = new  # the server applied the new config, one entry failed
        return PodReply(400, new, {"error": "Reloading config file failed. Check server logs for more info. - model gone: …"})

    pods.reload = reload_400  # type: ignore[method-assign]
    report = check_pod(PodTarget("p1", url), new, pods)
    assert report.applied and report.error is None
    assert report.model_errors == {"gone": pods.model_errors["gone"]}


def test_azure_blob_and_files_models_share_the_azure_secret() -> None:
    blob = model("blob", "2026-01-01T00:00:00Z", storageUri="az://models/a", storageSecret="azure")
    files = model("files", "2026-01-02T00:00:00Z", storageUri="azfs://share/b", storageSecret="other")
    assert files.storage_scheme == "az"
    out = rendered(blob, files)
    assert [m.name for m in out.models] == ["blob"]
    assert "already reads az:// with Secret 'azure'" in out.rejected["files"]
    same = model("files", "2026-01-02T00:00:00Z", storageUri="azfs://share/b", storageSecret="azure")
    out = rendered(blob, same)
    assert sorted(m.base_path for m in parse_config(out.config, base_dir="/").models) == [
        "az://models/a", "azfs://share/b"]
