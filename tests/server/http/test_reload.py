"""Config reload and version-folder changes over HTTP, against a real server.

Each test gets its own server and repository, so edits never leak between tests.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ovtest_models as models
import pytest
import requests
from ovtest_server import ServerProcess, start_server, write_config

pytestmark = pytest.mark.timeout(240)

ADD_BODY = {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 1], [1, 1]]]}}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    models.add_model(tmp_path / "add")
    models.add_model(tmp_path / "other")
    write_config(tmp_path / "config.json", [{"name": "add", "base_path": "add"}])
    return tmp_path


def _server(repo: Path, poll: str) -> Iterator[ServerProcess]:
    proc = start_server(
        ["--config_path", str(repo / "config.json"), "--file_system_poll_wait_seconds", poll],
        workdir=repo,
    )
    yield proc
    assert proc.stop() == 0, proc.log()


@pytest.fixture
def server(repo: Path) -> Iterator[ServerProcess]:
    yield from _server(repo, "0")


@pytest.fixture
def polling_server(repo: Path) -> Iterator[ServerProcess]:
    yield from _server(repo, "0.2")


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def reload(server: ServerProcess) -> requests.Response:
    return requests.post(f"{server.url}/v1/config/reload", timeout=60)


def test_reload_adds_and_removes_models(server: ServerProcess, repo: Path) -> None:
    before = requests.get(f"{server.url}/v1/config", timeout=10).headers["X-Ovserve-Config-Hash"]
    write_config(repo / "config.json", [{"name": "add", "base_path": "add"}, {"name": "other", "base_path": "other"}])
    r = reload(server)
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"add", "other"}
    after = r.headers["X-Ovserve-Config-Hash"]
    assert after != before
    assert requests.post(f"{server.url}/v1/models/other:predict", json=ADD_BODY, timeout=10).status_code == 200

    write_config(repo / "config.json", [{"name": "other", "base_path": "other"}])
    r = reload(server)
    assert r.status_code == 201, r.text
    assert "other" in r.json()
    gone = requests.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=10)
    assert gone.status_code == 404


def test_invalid_config_keeps_every_model_serving(server: ServerProcess, repo: Path) -> None:
    good = requests.get(f"{server.url}/v1/config", timeout=10).headers["X-Ovserve-Config-Hash"]
    (repo / "config.json").write_text('{"model_config_list": [{"config": {"name": "add", "nireq": "x"}}]}')
    r = reload(server)
    assert r.status_code == 412, r.text
    assert r.text.startswith('{\n\t"error": "Reloading config file failed. Check server logs for more info.')
    assert r.headers["X-Ovserve-Config-Hash"] == good
    assert requests.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=10).status_code == 200


def test_missing_config_file(server: ServerProcess, repo: Path) -> None:
    (repo / "config.json").unlink()
    r = reload(server)
    assert r.status_code == 500
    assert json.loads(r.text) == {"error": "Config file not found or cannot open."}
    assert requests.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=10).status_code == 200


def test_failed_load_reports_real_error_and_others_keep_serving(server: ServerProcess, repo: Path) -> None:
    write_config(repo / "config.json", [
        {"name": "add", "base_path": "add"},
        {"name": "broken", "base_path": "add", "target_device": "NONEXISTENT"},
    ])
    r = reload(server)
    assert r.status_code == 201, r.text
    (status,) = r.json()["broken"]["model_version_status"]
    assert status["state"] == "LOADING"
    assert status["status"]["error_code"] == "UNKNOWN"
    assert "NONEXISTENT" in status["status"]["error_message"]
    assert requests.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=10).status_code == 200


def test_reload_with_a_missing_base_path_fails_and_applies_the_rest(server: ServerProcess, repo: Path) -> None:
    """OVMS: 400 ``Reloading config file failed…`` for the entry that cannot be read, while the
    valid rest of the new config is applied and nothing that served stops."""
    write_config(repo / "config.json", [
        {"name": "add", "base_path": "add"},
        {"name": "other", "base_path": "other"},
        {"name": "nowhere", "base_path": "does/not/exist"},
    ])
    r = reload(server)
    assert r.status_code == 400, r.text
    assert r.text.startswith('{\n\t"error": "Reloading config file failed. Check server logs for more info.')
    assert "model nowhere: The model base path does not exist or is not a directory" in r.text
    applied = requests.get(f"{server.url}/v1/config", timeout=10)
    assert r.headers["X-Ovserve-Config-Hash"] == applied.headers["X-Ovserve-Config-Hash"]
    assert sorted(applied.json()) == ["add", "nowhere", "other"]
    for name in ("add", "other"):
        assert requests.post(f"{server.url}/v1/models/{name}:predict", json=ADD_BODY, timeout=10).status_code == 200
    status = requests.get(f"{server.url}/v1/models/nowhere", timeout=10)
    assert status.status_code == 404
    assert "The model base path does not exist or is not a directory" in status.json()["error"]
    ready = requests.get(f"{server.url}/v2/models/nowhere/ready", timeout=10)
    assert ready.status_code == 404 and "does not exist" in ready.json()["error"]
    assert reload(server).status_code == 200  # the same config again: nothing new to report


def test_poll_picks_up_new_and_removed_version_folders(polling_server: ServerProcess, repo: Path) -> None:
    url = f"{polling_server.url}/v1/models/add"
    models.add_model(repo / "add", version=2, offset=5.0)
    def states() -> dict[str, str]:
        return {s["version"]: s["state"] for s in requests.get(url, timeout=5).json()["model_version_status"]}

    wait_for(lambda: states().get("2") == "AVAILABLE")
    # latest(1) policy: version 1 retires once version 2 is available
    wait_for(lambda: states().get("1") == "END")
    out = requests.post(f"{url}:predict", json=ADD_BODY, timeout=10).json()["outputs"]
    assert out == [[[7.0, 8.0], [9.0, 10.0]]]
    shutil.rmtree(repo / "add" / "2")
    wait_for(lambda: states().get("1") == "AVAILABLE")


def test_poll_applies_config_edits(polling_server: ServerProcess, repo: Path) -> None:
    write_config(repo / "config.json", [{"name": "add", "base_path": "add"}, {"name": "other", "base_path": "other"}])
    wait_for(lambda: requests.get(f"{polling_server.url}/v1/models/other", timeout=5).status_code == 200)


@pytest.mark.slow
def test_reload_under_load_never_fails_a_request(server: ServerProcess, repo: Path) -> None:
    """Config edits and new version folders while requests are in flight: no request fails."""
    failures: list[str] = []
    done = threading.Event()
    counts = [0]

    def client() -> None:
        with requests.Session() as s:
            while not done.is_set():
                r = s.post(f"{server.url}/v1/models/add:predict", json=ADD_BODY, timeout=30)
                counts[0] += 1
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for step in range(6):
            if step % 2 == 0:
                write_config(repo / "config.json", [
                    {"name": "add", "base_path": "add", "nireq": 1 + step},
                    {"name": "other", "base_path": "other"},
                ])
            else:
                models.add_model(repo / "add", version=2 + step)
            assert reload(server).status_code in (200, 201)
            time.sleep(0.3)
    finally:
        done.set()
        for t in threads:
            t.join(30)
    assert counts[0] > 20
    assert failures == []
