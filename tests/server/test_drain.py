"""Graceful drain (``--drain_seconds``) and JSON logs (``--log_format json``), on real processes.

The rolling-restart test plays what a Kubernetes Service does in front of two server pods:

* an **endpoints poller** (the kubelet's readiness probe feeding the EndpointSlice) GETs
  ``/v2/health/ready`` of each backend every 50 ms and keeps the ready ones in the rotation;
* a **round-robin client** (kube-proxy) sends every request on a new connection to the next
  ready backend. It retries on another backend only when ``connect()`` is refused, i.e. before
  a byte of the request was sent (what happens when a connection races a pod that stopped
  listening); any other error, a timeout or a non-200 answer counts as a failed request.

Assumed, as on a cluster: routing learns about not-ready within the drain period (here 50 ms
polling against a 1.5 s drain; on a cluster, endpoint propagation against ``spec.drainSeconds``,
10 s by default), and clients do not hold keep-alive connections across the drain (kube-proxy
balances connections, not requests; a client that pools connections must retry idempotent
requests on a closed connection, as HTTP/1.1 allows).
"""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from ovtest_models import add_model
from ovtest_server import ServerProcess, free_port, start_server, wait_until_ready, write_config

from ovserve.server.cli import MAX_DRAIN_SECONDS, UsageError, build_parser, validate

DRAIN = 1.5
BODY = json.dumps({"inputs": {"a": [[[1.0, 2.0], [3.0, 4.0]]],
                              "b": [[[10.0, 20.0], [30.0, 40.0]]]}}).encode()
WANT = {"outputs": [[[11.0, 22.0], [33.0, 44.0]]]}


@pytest.mark.parametrize("value", ["-1", str(MAX_DRAIN_SECONDS + 1)])
def test_drain_seconds_is_bounded(value: str) -> None:
    args = build_parser().parse_args(["--rest_port", "9000", "--config_path", "c.json",
                                      "--drain_seconds", value])
    with pytest.raises(UsageError, match=f"drain_seconds must be from 0 to {MAX_DRAIN_SECONDS}"):
        validate(args)


def test_log_format_json_writes_one_object_per_line(tmp_path: Path) -> None:
    add_model(tmp_path / "models" / "add")
    config = write_config(tmp_path / "config.json",
                          [{"name": "add", "base_path": str(tmp_path / "models" / "add")}])
    server = start_server(["--config_path", str(config), "--log_format", "json"], tmp_path)
    try:
        assert server.stop() == 0
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses, or this raises
    assert {"time", "level", "logger", "pid", "message"} <= set(records[0])
    assert records[0]["time"].endswith("Z")
    messages = [r["message"] for r in records]
    assert any(m.startswith("REST server listening on http://127.0.0.1:") for m in messages)
    assert "Shutdown complete" in messages


def _start_on(port: int, args: list[str], workdir: Path) -> ServerProcess:
    log_path = workdir / f"server-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ovserve.server", "--rest_bind_address", "127.0.0.1",
             "--rest_port", str(port), *args],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    server = ServerProcess(proc, "127.0.0.1", port, log_path)
    wait_until_ready(server)
    return server


class Service:
    """Endpoints poller + round-robin client over fresh connections (see the module docstring)."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.ready: list[int] = list(ports)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.rr = itertools.count()
        self.served: dict[int, int] = {p: 0 for p in ports}
        self.retries = 0
        self.failures: list[str] = []

    def poll_endpoints(self) -> None:
        while not self.done.is_set():
            ready = []
            for port in self.ports:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                    conn.request("GET", "/v2/health/ready")
                    if conn.getresponse().status == 200:
                        ready.append(port)
                    conn.close()
                except OSError:
                    pass
            with self.lock:
                self.ready = ready
            time.sleep(0.05)

    def _pick(self) -> int | None:
        with self.lock:
            if not self.ready:
                return None
            return self.ready[next(self.rr) % len(self.ready)]

    def one_request(self) -> None:
        for _ in range(20):
            port = self._pick()
            if port is None:
                time.sleep(0.01)
                continue
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.connect()
            except ConnectionRefusedError:  # nothing sent yet: route elsewhere
                with self.lock:
                    self.retries += 1
                continue
            try:
                conn.request("POST", "/v1/models/add:predict", BODY,
                             {"Content-Type": "application/json"})
                reply = conn.getresponse()
                data = reply.read()
                if reply.status != 200 or json.loads(data) != WANT:
                    raise RuntimeError(f"HTTP {reply.status}: {data[:200]!r}")
            except Exception as exc:
                with self.lock:
                    self.failures.append(f"port {port}: {type(exc).__name__}: {exc}")
                return
            finally:
                conn.close()
            with self.lock:
                self.served[port] += 1
            return
        with self.lock:
            self.failures.append("no backend accepted a connection in 20 tries")

    def load(self) -> None:
        while not self.done.is_set():
            self.one_request()


def test_rolling_restart_of_one_of_two_servers_under_load_fails_no_request(
        tmp_path: Path) -> None:
    add_model(tmp_path / "models" / "add")
    config = write_config(tmp_path / "config.json",
                          [{"name": "add", "base_path": str(tmp_path / "models" / "add")}])
    args = ["--config_path", str(config), "--drain_seconds", str(DRAIN)]
    port_a, port_b = free_port(), free_port()
    a = _start_on(port_a, args, tmp_path)
    b = _start_on(port_b, args, tmp_path)
    service = Service([port_a, port_b])
    threads = [threading.Thread(target=service.poll_endpoints)]
    threads += [threading.Thread(target=service.load) for _ in range(4)]
    restarted: ServerProcess | None = None
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = dict(service.served)
        assert before[port_a] > 0 and before[port_b] > 0, before

        signalled = time.monotonic()
        a.proc.terminate()  # SIGTERM, as the kubelet sends it
        # Not ready at once ...
        while requests.get(f"{a.url}/v2/health/ready", timeout=2).status_code != 503:
            assert time.monotonic() - signalled < 0.5, "still ready 0.5 s after SIGTERM"
            time.sleep(0.01)
        not_ready_after = time.monotonic() - signalled
        # ... yet still answering inference while it drains.
        r = requests.post(f"{a.url}/v1/models/add:predict", data=BODY, timeout=10)
        assert r.status_code == 200 and r.json() == WANT
        assert a.proc.wait(DRAIN + 30) == 0, a.log()
        exited_after = time.monotonic() - signalled
        assert exited_after >= DRAIN, exited_after
        assert "Draining: /v2/health/ready answers 503" in a.log()

        restarted = _start_on(port_a, args, tmp_path)
        served_a = service.served[port_a]
        deadline = time.monotonic() + 10
        while service.served[port_a] < served_a + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        service.done.set()
        for t in threads:
            t.join(15)
        for server in (a, b, restarted):
            if server is not None:
                server.stop()
    print(f"served {service.served}, connect-refused retries {service.retries}, "
          f"not ready after {not_ready_after * 1000:.0f} ms, exited after {exited_after:.2f} s")
    assert service.failures == [], service.failures[:5]
    assert service.served[port_a] >= before[port_a] + 20, service.served  # back in rotation
    assert service.served[port_b] > before[port_b]
    assert not_ready_after < 0.5 and DRAIN <= exited_after < DRAIN + 5
