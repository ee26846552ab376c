"""Run a real ``ovserve-server`` process for tests: free port on 127.0.0.1, wait until ready.

Used by the HTTP suites and the operator integration tests (which bind to 127.0.0.2, ...).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    scheme: str = "http"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def start_server(
    args: Sequence[str],
    workdir: Path,
    host: str = "127.0.0.1",
    ready_timeout: float = 90.0,
    wait_ready: bool = True,
    scheme: str = "http",
    session: requests.Session | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start ``python -m ovserve.server``; ``env`` adds to (or, with "" values, clears) the
    environment it inherits."""
    port = free_port(host)
    log_path = workdir / f"server-{port}.log"
    log_file = log_path.open("wb")
    cmd = [sys.executable, "-m", "ovserve.server", "--rest_bind_address", host,
           "--rest_port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v != ""}
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir,
                            env=full_env)
    log_file.close()
    server = ServerProcess(proc, host, port, log_path, scheme)
    if wait_ready:
        wait_until_ready(server, ready_timeout, session)
    return server


def wait_until_ready(server: ServerProcess, timeout: float = 90.0,
                     session: requests.Session | None = None) -> None:
    deadline = time.monotonic() + timeout
    get = (session or requests).get
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log()}")
        try:
            if get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise TimeoutError(f"server not ready after {timeout}s:\n{server.log()}")


def write_config(path: Path, models: Sequence[dict[str, object]], **extra: object) -> Path:
    doc: dict[str, object] = {"model_config_list": [{"config": m} for m in models], **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    return path
