"""config.json parsing: a table of accepted and rejected documents, with the field named."""

from __future__ import annotations

import json

import pytest

from ovserve.server.config import (
    ConfigError,
    VersionPolicy,
    config_hash,
    parse_config,
    parse_shape,
    render_config,
)


def doc(**cfg: object) -> bytes:
    entry = {"name": "m", "base_path": "models/m", **cfg}
    return json.dumps({"model_config_list": [{"config": entry}]}).encode()


def test_minimal_entry_defaults_and_relative_base_path() -> None:
    cfg = parse_config(doc(), base_dir="/etc/ovms")
    (m,) = cfg.models
    assert m.name == "m"
    assert m.base_path == "/etc/ovms/models/m"
    assert m.target_device == "CPU"
    assert m.nireq == 0
    assert m.model_version_policy == VersionPolicy("latest", num_versions=1)
    assert cfg.metrics is None


def test_absolute_base_path_kept() -> None:
    (m,) = parse_config(doc(base_path="/models/x"), base_dir="/etc").models
    assert m.base_path == "/models/x"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"all": {}}, VersionPolicy("all")),
        ({"latest": {"num_versions": 2}}, VersionPolicy("latest", num_versions=2)),
        ({"latest": {}}, VersionPolicy("latest", num_versions=1)),
        ({"specific": {"versions": [3, 1, 3]}}, VersionPolicy("specific", versions=(1, 3))),
    ],
)
def test_version_policies(policy: dict[str, object], expected: VersionPolicy) -> None:
    (m,) = parse_config(doc(model_version_policy=policy), base_dir="/").models
    assert m.model_version_policy == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "The file is not valid json"),
        (b"[]", "(document): expected a JSON object, got an array"),
        (b"{}", "model_config_list: required key is missing"),
        (b'{"model_config_list": {}}', "model_config_list: expected an array"),
        (b'{"model_config_list": [], "extra": 1}', "extra: unknown key"),
        (b'{"model_config_list": [{"cfg": {}}]}', "model_config_list[0].cfg: unknown key"),
        (doc(nireq="four"), 'model_config_list[0].config.nireq: expected an integer >= 0, got a string "four"'),
        (doc(nireq=-1), "model_config_list[0].config.nireq: expected an integer >= 0"),
        (doc(nireq=True), "model_config_list[0].config.nireq: expected an integer >= 0, got a boolean"),
        (doc(unknown=1), "model_config_list[0].config.unknown: unknown key"),
        (doc(shape="(1,x)"), "model_config_list[0].config.shape: The provided shape is in wrong format"),
        (doc(shape={"a": 5}), "model_config_list[0].config.shape.a: expected a shape string"),
        (doc(layout="N-C"), "model_config_list[0].config.layout: expected a layout"),
        (doc(target_device="cpu"), "model_config_list[0].config.target_device: expected a device name"),
        (doc(plugin_config=[]), "model_config_list[0].config.plugin_config: expected an object"),
        (doc(plugin_config={"A": None}), "model_config_list[0].config.plugin_config.A: expected a string"),
        (doc(model_version_policy={"newest": {}}), "Model version policy contains unsupported key"),
        (doc(model_version_policy={"all": {}, "latest": {}}), "Model version policy is in wrong format"),
        (doc(model_version_policy={"latest": {"num_versions": 0}}), "num_versions: expected an integer >= 1"),
        (doc(model_version_policy={"specific": {"versions": []}}), "versions: expected a non-empty array"),
        (doc(name="a/b"), "must not contain '/'"),
        (doc(stateful=True), "stateful models are not supported"),
        (b'{"model_config_list": [], "pipeline_config_list": [{"name": "p"}]}', "DAG pipelines are not supported"),
        (b'{"model_config_list": [], "monitoring": {"metrics": {"enable": "yes"}}}', "monitoring.metrics.enable: expected a boolean"),
        (b'{"model_config_list": [], "monitoring": {"metrics": {"metrics_list": ["nope"]}}}', "unknown metric 'nope'"),
    ],
)
def test_rejected_documents_name_the_field(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir="/")
    assert message in str(info.value)


@pytest.mark.parametrize(
    "url", ["s3://bucket/m", "gs://bucket/a/b", "az://container/m", "azfs://share/m", "hdfs://x/m"]
)
def test_storage_urls_are_kept_as_written(url: str) -> None:
    """A URL is the model's own matter (its status says whether it can be read), not a schema
    error that would refuse the whole document."""
    (model,) = parse_config(doc(base_path=url), base_dir="/etc").models
    assert model.base_path == url


def test_duplicate_names_rejected() -> None:
    entry = {"config": {"name": "m", "base_path": "/m"}}
    data = json.dumps({"model_config_list": [entry, entry]}).encode()
    with pytest.raises(ConfigError, match=r"model_config_list\[1\].config.name: duplicate"):
        parse_config(data, base_dir="/")


@pytest.mark.parametrize(
    ("text", "dims"),
    [
        ("(1,3,224,224)", ((1, 1), (3, 3), (224, 224), (224, 224))),
        ("(-1,3)", ((0, -1), (3, 3))),
        ("(1:8,3)", ((1, 8), (3, 3))),
        ("1,2", ((1, 1), (2, 2))),
    ],
)
def test_parse_shape(text: str, dims: tuple[tuple[int, int], ...]) -> None:
    assert parse_shape(text) == dims


def test_render_is_canonical_and_order_independent() -> None:
    a = {"name": "a", "base_path": "/m/a", "nireq": 2}
    b = {"name": "b", "base_path": "/m/b", "target_device": "GPU"}
    one = render_config([a, b])
    two = render_config([b, a])
    assert one == two
    assert config_hash(one) == config_hash(two)
    assert len(config_hash(one)) == 64
    assert [m.name for m in parse_config(one, base_dir="/").models] == ["a", "b"]


def test_render_refuses_invalid_entries() -> None:
    with pytest.raises(ConfigError, match="nireq"):
        render_config([{"name": "a", "base_path": "/a", "nireq": -3}])


def test_metrics_section() -> None:
    data = b'{"model_config_list": [], "monitoring": {"metrics": {"enable": true, "metrics_list": ["ovms_requests_success"]}}}'
    cfg = parse_config(data, base_dir="/")
    assert cfg.metrics is not None
    assert cfg.metrics.enable is True
    assert cfg.metrics.metrics_list == ("ovms_requests_success",)


def test_metrics_list_absent_means_default_and_empty_means_none() -> None:
    absent = parse_config(b'{"model_config_list": [], "monitoring": {"metrics": {"enable": true}}}', base_dir="/")
    empty = parse_config(b'{"model_config_list": [], "monitoring": {"metrics": {"enable": true, "metrics_list": []}}}', base_dir="/")
    assert absent.metrics is not None and absent.metrics.metrics_list is None
    assert empty.metrics is not None and empty.metrics.metrics_list == ()
