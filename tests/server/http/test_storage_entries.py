"""Entries that fail alone at startup, against a real server (fast: no storage emulator).

OVMS's own functional-test config carries one model at ``s3://inference/resnet``; the server
must start, serve every other entry, and say in that model's status why it cannot be read.
The storage emulators' suite (``test_cloud_storage.py``, slow) covers reading for real.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import ovtest_models as models
import pytest
import requests
from ovtest_server import ServerProcess, start_server, write_config

ADD_BODY = {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 1], [1, 1]]]}}


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, closed_port: int) -> Iterator[ServerProcess]:
    models.add_model(tmp_path / "add")
    write_config(tmp_path / "config.json", [
        {"name": "add", "base_path": "add"},
        {"name": "resnet", "base_path": "s3://inference/resnet"},
        {"name": "share", "base_path": "azfs://share/models/m"},
        {"name": "hadoop", "base_path": "hdfs://cluster/models/m"},
        {"name": "broken", "base_path": "add", "target_device": "NONEXISTENT"},
    ])
    env = {"S3_ENDPOINT": f"http://127.0.0.1:{closed_port}", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1", "AWS_SESSION_TOKEN": "",
           "AZURE_STORAGE_CONNECTION_STRING": ""}
    proc = start_server(["--config_path", str(tmp_path / "config.json"),
                         "--storage_timeout_seconds", "2"], workdir=tmp_path, env=env)
    yield proc
    assert proc.stop() == 0, proc.log()


def error_of(server: ServerProcess, path: str) -> tuple[int, str]:
    r = requests.get(f"{server.url}{path}", timeout=10)
    return r.status_code, r.json()["error"]


def test_failing_entries_fail_alone_and_say_why(server: ServerProcess) -> None:
    r = requests.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=10)
    assert r.status_code == 200, r.text
    code, text = error_of(server, "/v1/models/resnet")
    assert code == 404
    assert text.startswith("Cannot list s3://inference/resnet: EndpointConnectionError"), text
    code, text = error_of(server, "/v2/models/resnet/ready")
    assert code == 404 and text.startswith("Cannot list s3://inference/resnet"), text
    code, text = error_of(server, "/v2/models/resnet")
    assert code == 404 and text.startswith("Cannot list s3://inference/resnet"), text
    code, text = error_of(server, "/v1/models/share")
    assert (code, text) == (404, "Cannot use azfs://share/models/m: AZURE_STORAGE_CONNECTION_STRING is not set")
    code, text = error_of(server, "/v1/models/hadoop")
    assert code == 404 and "remote storage hdfs:// is not supported" in text
    # a version that fails to compile shows in its version status, as before
    (status,) = requests.get(f"{server.url}/v1/models/broken", timeout=10).json()["model_version_status"]
    assert (status["state"], status["status"]["error_code"]) == ("LOADING", "UNKNOWN")
    assert requests.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
    assert sorted(requests.get(f"{server.url}/v1/config", timeout=10).json()) == [
        "add", "broken", "hadoop", "resnet", "share"]


def test_the_operators_handshake_reads_the_reason_from_a_real_server(server: ServerProcess) -> None:
    from ovserve.operator.reload import HttpPodClient, PodTarget, check_pod

    expected = requests.get(f"{server.url}/v1/config", timeout=10).headers["X-Ovserve-Config-Hash"]
    report = check_pod(PodTarget("pod-0", server.url), expected, HttpPodClient(timeout=10))
    assert report.applied
    assert sorted(report.model_errors) == ["hadoop", "resnet", "share"]
    assert report.model_errors["resnet"].startswith("Cannot list s3://inference/resnet: ")
    assert "broken" not in report.model_errors  # it has a (failed) version: its status says why


def test_a_schema_failure_still_refuses_the_start(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_config_list": [{"config": {"name": "m", "base_path": "s3://b/m", "nireq": "x"}}]}')
    proc = start_server(["--config_path", str(tmp_path / "config.json")], workdir=tmp_path,
                        wait_ready=False)
    assert proc.proc.wait(60) == 1
    assert "Cannot start: model_config_list[0].config.nireq: expected an integer >= 0" in proc.log()
