"""s3://, gs:// and az:// base paths end to end: a real ovserve-server against real storage
servers on 127.0.0.1 (moto, gcp-storage-emulator, Azurite; see storage_emulators.py), and
azfs:// (Azure Files, which no emulator here serves) against a stand-in of its REST API
(azure_files_fake.py).

Covered for each provider: versions discovered and served, a version added and removed
remotely and picked up by polling, the local cache copy removed when its version retires.
Wrong credentials (S3 and Azure; the GCS emulator checks none), an unreachable endpoint (a
socket that accepts and never answers) with the event loop still answering, and a large file
streamed into the cache without the server's memory growing by its size (S3).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ovtest_models as models
import pytest
import requests
from azure_files_fake import AzureFilesFake
from ovtest_server import ServerProcess, start_server, write_config
from storage_emulators import PROVIDERS, S3, Emulator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ADD_BODY = {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[1, 1], [1, 1]]]}}
PLAIN = [[[2.0, 3.0], [4.0, 5.0]]]
PLUS_5 = [[[7.0, 8.0], [9.0, 10.0]]]


@pytest.fixture(scope="module", params=sorted(PROVIDERS))
def emulator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = PROVIDERS[request.param](tmp_path_factory.mktemp(request.param))
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    emu = S3(tmp_path_factory.mktemp("s3-only"))
    yield emu
    emu.stop()


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def states(server: ServerProcess, name: str) -> dict[str, str]:
    r = requests.get(f"{server.url}/v1/models/{name}", timeout=10)
    if r.status_code != 200:
        return {}
    return {s["version"]: s["state"] for s in r.json()["model_version_status"]}


def predict(server: ServerProcess, name: str) -> object:
    r = requests.post(f"{server.url}/v1/models/{name}:predict", json=ADD_BODY, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["outputs"]


def serve(tmp_path: Path, entries: list[dict[str, object]], env: dict[str, str],
          *extra: str) -> ServerProcess:
    write_config(tmp_path / "config.json", entries)
    return start_server(["--config_path", str(tmp_path / "config.json"),
                         "--storage_cache_dir", str(tmp_path / "cache"), *extra],
                        workdir=tmp_path, env=env)


def cache_entries(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "cache"))


def test_versions_discovered_polled_and_cache_cleaned(emulator: Emulator, tmp_path: Path) -> None:
    prefix = f"poll-{time.monotonic_ns()}/add"
    emulator.upload_dir(models.add_model(tmp_path / "src", version=1), f"{prefix}/1")
    emulator.put(f"{prefix}/notes/readme.txt", b"not a version")
    server = serve(tmp_path, [{"name": "remote", "base_path": emulator.url(prefix)}], emulator.env,
                   "--file_system_poll_wait_seconds", "0.2")
    try:
        assert states(server, "remote") == {"1": "AVAILABLE"}
        assert predict(server, "remote") == PLAIN
        (first,) = cache_entries(tmp_path)

        v2 = emulator.upload_dir(models.add_model(tmp_path / "src", version=2, offset=5.0), f"{prefix}/2")
        wait_for(lambda: states(server, "remote") == {"2": "AVAILABLE", "1": "END"})
        assert predict(server, "remote") == PLUS_5
        wait_for(lambda: first not in cache_entries(tmp_path))  # the retired copy is removed
        assert len(cache_entries(tmp_path)) == 1

        for key in v2:
            emulator.delete(key)
        wait_for(lambda: states(server, "remote") == {"2": "END", "1": "AVAILABLE"})
        assert predict(server, "remote") == PLAIN
        wait_for(lambda: len(cache_entries(tmp_path)) == 1)
        meta = requests.get(f"{server.url}/v2/models/remote", timeout=10)
        assert meta.status_code == 200 and meta.json()["versions"] == ["1"]
    finally:
        assert server.stop() == 0, server.log()
    assert cache_entries(tmp_path) == []  # a given cache folder is emptied at exit


def test_missing_remote_path_fails_alone(emulator: Emulator, tmp_path: Path) -> None:
    models.add_model(tmp_path / "local")
    server = serve(tmp_path, [{"name": "local", "base_path": "local"},
                              {"name": "remote", "base_path": emulator.url("no/such/model")}],
                   emulator.env)
    try:
        assert predict(server, "local") == PLAIN
        r = requests.get(f"{server.url}/v1/models/remote", timeout=10)
        assert r.status_code == 404
        assert r.json()["error"] == ("The model base path does not exist or is not a directory: "
                                     f"{emulator.url('no/such/model')}")
    finally:
        assert server.stop() == 0, server.log()


REFUSALS = {"s3": "InvalidAccessKeyId", "az": "AuthorizationFailure"}  # the GCS emulator checks none


@pytest.mark.parametrize("emulator", sorted(REFUSALS), indirect=True)
def test_wrong_credentials_fail_their_model_alone(emulator: Emulator, tmp_path: Path) -> None:
    refusal = REFUSALS[emulator.scheme]
    prefix = f"creds-{time.monotonic_ns()}/add"
    emulator.upload_dir(models.add_model(tmp_path / "src"), f"{prefix}/1")
    models.add_model(tmp_path / "local")
    server = serve(tmp_path, [{"name": "local", "base_path": "local"},
                              {"name": "remote", "base_path": emulator.url(prefix)}],
                   emulator.bad_env)
    try:
        assert predict(server, "local") == PLAIN
        r = requests.get(f"{server.url}/v1/models/remote", timeout=10)
        assert r.status_code == 404
        assert r.json()["error"].startswith(f"Cannot list {emulator.url(prefix)}: {refusal}")
        r = requests.post(f"{server.url}/v2/models/remote/infer", timeout=10, json={"inputs": []})
        assert r.status_code == 404 and refusal in r.json()["error"]
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


def test_unreachable_endpoint_fails_its_model_and_the_loop_keeps_answering(
    s3: S3, blackhole: int, tmp_path: Path
) -> None:
    models.add_model(tmp_path / "local")
    env = {**s3.env, "S3_ENDPOINT": f"127.0.0.1:{blackhole}"}
    started = time.monotonic()
    server = serve(tmp_path, [{"name": "local", "base_path": "local"},
                              {"name": "remote", "base_path": "s3://models/stalled"}], env,
                   "--storage_timeout_seconds", "1", "--file_system_poll_wait_seconds", "0.1")
    try:
        assert time.monotonic() - started < 30  # bounded by the storage deadline, not hung
        worst = 0.0
        deadline = time.monotonic() + 4  # polls keep hitting the stalled endpoint meanwhile
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            assert predict(server, "local") == PLAIN
            worst = max(worst, time.monotonic() - t0)
        assert worst < 0.5, f"a request took {worst:.3f} s while the storage stalled"
        r = requests.get(f"{server.url}/v1/models/remote", timeout=10)
        assert r.status_code == 404
        error = r.json()["error"]
        assert error.startswith("Cannot list s3://models/stalled: "), error
        assert "timeout" in error.lower() or "did not answer" in error, error
    finally:
        assert server.stop() == 0, server.log()


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_file_is_streamed_to_the_cache_and_removed_on_retire(s3: S3, tmp_path: Path) -> None:
    size = 256 * 1024 * 1024
    prefix = f"large-{time.monotonic_ns()}/add"
    src = models.add_model(tmp_path / "src")
    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # real bytes, not a hole: the download must carry them all
        block = os.urandom(1024 * 1024)
        for _ in range(size // len(block)):
            f.write(block)
    s3.upload_dir(src, f"{prefix}/1")
    s3.put_file(f"{prefix}/1/weights/big.bin", big)
    big.unlink()
    models.add_model(tmp_path / "local")
    server = serve(tmp_path, [{"name": "local", "base_path": "local"}], s3.env)
    try:
        assert predict(server, "local") == PLAIN
        before = _peak_rss(server.proc.pid)
        write_config(tmp_path / "config.json", [{"name": "local", "base_path": "local"},
                                                {"name": "remote", "base_path": s3.url(prefix)}])
        r = requests.post(f"{server.url}/v1/config/reload", timeout=120)
        assert r.status_code == 201, r.text
        assert predict(server, "remote") == PLAIN
        growth = _peak_rss(server.proc.pid) - before
        assert growth < size // 4, f"peak RSS grew by {growth / 2**20:.0f} MiB for a 256 MiB file"
        (copy,) = cache_entries(tmp_path)
        assert (tmp_path / "cache" / copy / "weights" / "big.bin").stat().st_size == size

        s3.upload_dir(models.add_model(tmp_path / "src", version=2, offset=5.0), f"{prefix}/2")
        r = requests.post(f"{server.url}/v1/config/reload", timeout=120)
        assert r.status_code == 201, r.text
        assert predict(server, "remote") == PLUS_5
        wait_for(lambda: copy not in cache_entries(tmp_path))
        print(f"peak RSS growth while streaming 256 MiB: {growth / 2**20:.1f} MiB")
    finally:
        assert server.stop() == 0, server.log()


def test_azure_files_share_versions_polled_and_missing_path(tmp_path: Path) -> None:
    fake = AzureFilesFake()
    try:
        def upload(folder: Path, prefix: str) -> list[str]:
            keys = []
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    key = f"{prefix}/{path.relative_to(folder).as_posix()}"
                    fake.files[key] = path.read_bytes()
                    keys.append(key)
            return keys

        upload(models.add_model(tmp_path / "src", version=1), "models/add/1")
        env = {"AZURE_STORAGE_CONNECTION_STRING": fake.connection_string}
        server = serve(tmp_path, [{"name": "remote", "base_path": "azfs://models/add"},
                                  {"name": "gone", "base_path": "azfs://models/nothing/here"}],
                       env, "--file_system_poll_wait_seconds", "0.2")
        try:
            assert states(server, "remote") == {"1": "AVAILABLE"}
            assert predict(server, "remote") == PLAIN
            v2 = upload(models.add_model(tmp_path / "src", version=2, offset=5.0), "models/add/2")
            wait_for(lambda: states(server, "remote") == {"2": "AVAILABLE", "1": "END"})
            assert predict(server, "remote") == PLUS_5
            for key in v2:
                del fake.files[key]
            wait_for(lambda: states(server, "remote") == {"2": "END", "1": "AVAILABLE"})
            wait_for(lambda: len(cache_entries(tmp_path)) == 1)
            r = requests.get(f"{server.url}/v1/models/gone", timeout=10)
            assert (r.status_code, r.json()["error"]) == (
                404, "The model base path does not exist or is not a directory: azfs://models/nothing/here")
        finally:
            assert server.stop() == 0, server.log()
    finally:
        fake.stop()
