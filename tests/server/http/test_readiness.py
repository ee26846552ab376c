"""``/v2/health/ready`` before the initial config is loaded: the REST port is already up (live),
readiness is 503 until the first load is done (OVMS's servable manager is not INITIALIZED yet).

The config file is a named pipe, so the first load waits, deterministically, until the test
writes the config into it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ovtest_models as models
import pytest
import requests
from ovtest_server import ServerProcess, start_server, wait_until_ready

pytestmark = pytest.mark.timeout(120)


def wait_live(server: ServerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log()
        try:
            if requests.get(f"{server.url}/v2/health/live", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(server.log())


def test_ready_is_503_until_the_initial_config_is_loaded(tmp_path: Path) -> None:
    models.add_model(tmp_path / "add")
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    server = start_server(
        ["--config_path", str(fifo), "--file_system_poll_wait_seconds", "0"], tmp_path,
        wait_ready=False,
    )
    try:
        wait_live(server)
        r = requests.get(f"{server.url}/v2/health/ready", timeout=5)
        assert r.status_code == 503
        assert r.json() == {"error": "Server is not ready"}
        with fifo.open("w") as pipe:  # the server's first load reads this
            pipe.write(json.dumps({"model_config_list": [
                {"config": {"name": "add", "base_path": str(tmp_path / "add")}}]}))
        wait_until_ready(server, 60)
        assert requests.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200
        status = requests.get(f"{server.url}/v1/models/add", timeout=5).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        if server.proc.poll() is None:
            server.stop()
