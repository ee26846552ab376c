"""Start, probe and stop the HTTP targets (ovserve and the floor) as child processes.

Called by :mod:`run`. Each target listens on a free port of 127.0.0.1, logs into the run's
temporary folder, and is stopped with SIGTERM (then SIGKILL after a grace period).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_BIN = REPO / ".venv" / "bin" / "ovserve-server"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _spawn(name: str, cmd: list[str], port: int, workdir: Path) -> Target:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Target(name, proc, port, log_path)


def _wait(target: Target, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise RuntimeError(f"{target.name} exited with {target.proc.returncode}:\n"
                               f"{target.log_tail()}")
        try:
            if request(target.port, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    target.stop()
    raise TimeoutError(f"{target.name} not ready after {timeout:.0f}s:\n{target.log_tail()}")


def start_floor(responses_dir: Path, workdir: Path, chunk_size: int = 65536,
                bare: bool = False) -> Target:
    """The floor (floor.py); with ``bare``, the bare-delegate floor (``POST /bare/<case>``)."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).with_name("floor.py")), "--host", HOST,
           "--port", str(port), "--responses", str(responses_dir), "--chunk-size", str(chunk_size)]
    name = "floor"
    if bare:
        cmd.append("--bare")
        name = "bare"
    target = _spawn(name, cmd, port, workdir)
    _wait(target, "/ready", 30)
    return target


def server_available(server_bin: Path = SERVER_BIN) -> bool:
    return server_bin.exists()


def start_ovserve(config: Path, workdir: Path, extra: list[str] | None = None,
                  server_bin: Path = SERVER_BIN, timeout: float = 120) -> Target:
    """Start ``ovserve-server --config_path`` and wait for ``GET /v2/health/ready`` == 200.

    ``server_bin`` may be any executable taking OVMS's flags (another build, or OVMS itself).
    """
    port = free_port()
    cmd = [str(server_bin), "--config_path", str(config), "--rest_bind_address", HOST,
           "--rest_port", str(port), *(extra or [])]
    target = _spawn("ovserve", cmd, port, workdir)
    _wait(target, "/v2/health/ready", timeout)
    return target
