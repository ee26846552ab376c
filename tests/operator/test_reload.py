"""The reload handshake against scripted pods, the retry decision, and the HTTP client."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from operator_fakes import FakePods, ovms_body

from ovserve.operator.reload import (
    Converged,
    GaveUp,
    HandshakeResult,
    HttpPodClient,
    PodReport,
    PodTarget,
    Retry,
    VersionReport,
    check_pod,
    handshake,
    next_step,
    parse_statuses,
    retry_delay,
)

A, B = "http://127.0.0.2:8081", "http://127.0.0.3:8081"
NEW, OLD = "n" * 64, "o" * 64
OK_BODY = ovms_body({"add": [(1, "AVAILABLE", "OK", "OK")]})


def test_parse_statuses_reads_ovms_body() -> None:
    body = ovms_body({"add": [(2, "AVAILABLE", "OK", "OK"), (1, "END", "OK", "OK")],
                      "bad": [(1, "LOADING", "UNKNOWN", "Cannot open model.xml")]})
    parsed = parse_statuses(body)
    assert parsed["add"] == (VersionReport(1, "END", "OK", "OK"),
                             VersionReport(2, "AVAILABLE", "OK", "OK"))
    (bad,) = parsed["bad"]
    assert bad.failed and not bad.settling and bad.error_message == "Cannot open model.xml"
    assert parse_statuses(None) == {}
    assert parse_statuses({"x": {"model_version_status": [{"version": "?"}]}}) == {"x": ()}


def test_pod_that_already_reports_the_hash_is_not_reloaded(pods: FakePods) -> None:
    pods.applied[A] = NEW
    pods.bodies[A] = OK_BODY
    report = check_pod(PodTarget("a", A), NEW, pods)
    assert report.applied and not report.reloaded
    assert report.models["add"][0].state == "AVAILABLE"
    assert pods.calls == [("GET", A)]


def test_reload_applies_new_bytes(pods: FakePods) -> None:
    pods.applied[A], pods.on_disk[A] = OLD, NEW
    report = check_pod(PodTarget("a", A), NEW, pods)
    assert report.applied and report.reloaded and report.config_hash == NEW
    assert pods.calls == [("GET", A), ("POST", A)]


def test_pod_with_old_bytes_stays_stale(pods: FakePods) -> None:
    pods.applied[A] = pods.on_disk[A] = OLD
    report = check_pod(PodTarget("a", A), NEW, pods)
    assert not report.applied and report.config_hash == OLD and report.error is None


def test_reload_error_and_unreachable_pod_are_reported(pods: FakePods) -> None:
    pods.applied[A] = OLD
    pods.reload_error[A] = (412, "Reloading config file failed. - model_config_list: missing")
    pods.down.add(B)
    result = handshake([PodTarget("a", A), PodTarget("b", B)], NEW, pods)
    a, b = result.pods
    assert not a.applied and a.error is not None and a.error.startswith("HTTP 412: Reloading")
    assert not b.applied and b.error is not None and "Connection refused" in b.error
    assert result.stale == result.pods


def test_handshake_of_no_pods_is_empty(pods: FakePods) -> None:
    assert handshake([], NEW, pods) == HandshakeResult(NEW, ())


def report(name: str, applied: bool, state: str = "AVAILABLE", code: str = "OK") -> PodReport:
    version = VersionReport(1, state, code, "OK" if code == "OK" else "boom")
    return PodReport(name, NEW if applied else OLD, applied, {"add": (version,)})


def step(result: HandshakeResult, targets: list[PodTarget], now: float = 1000.0,
         attempt: int = 0, elapsed: float = 0.0) -> object:
    return next_step(result, targets, now, attempt, elapsed, timeout=60, base_delay=1,
                     max_delay=8)


def test_next_step_converged_when_all_applied_and_settled() -> None:
    result = HandshakeResult(NEW, (report("a", True), report("b", True, "LOADING", "UNKNOWN")))
    assert step(result, [PodTarget("a", A), PodTarget("b", B)]) == Converged()


def test_next_step_retries_stale_pods_with_backoff() -> None:
    result = HandshakeResult(NEW, (report("a", True), report("b", False)))
    targets = [PodTarget("a", A), PodTarget("b", B, NEW, 990.0)]
    first = step(result, targets, attempt=0)
    later = step(result, targets, attempt=5)
    assert isinstance(first, Retry) and first.delay == 1
    assert "pod(s) b" in first.reason
    assert isinstance(later, Retry) and later.delay == 8


def test_next_step_retries_while_versions_load() -> None:
    result = HandshakeResult(NEW, (report("a", True, "LOADING"),))
    assert isinstance(step(result, [PodTarget("a", A)]), Retry)
    gave_up = step(result, [PodTarget("a", A)], elapsed=61)
    assert isinstance(gave_up, GaveUp) and "still loading" in gave_up.message


def test_next_step_gives_up_on_pods_nudged_too_long_ago() -> None:
    result = HandshakeResult(NEW, (report("a", True), report("b", False)))
    recent = step(result, [PodTarget("a", A), PodTarget("b", B, NEW, 950.0)])
    old_nudge_other_hash = step(result, [PodTarget("a", A), PodTarget("b", B, OLD, 100.0)])
    overdue = step(result, [PodTarget("a", A), PodTarget("b", B, NEW, 900.0)])
    assert isinstance(recent, Retry)
    assert isinstance(old_nudge_other_hash, Retry)
    assert isinstance(overdue, GaveUp)
    assert "pod(s) b still report config oooooooooooo instead of nnnnnnnnnnnn" in overdue.message


def test_retry_delay_doubles_and_caps() -> None:
    assert [retry_delay(n, 0.5, 3) for n in range(5)] == [0.5, 1, 2, 3, 3]
    assert retry_delay(10_000, 1, 15) == 15


class _Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, status: int, body: object, digest: str | None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        if digest:
            self.send_header("X-Ovserve-Config-Hash", digest)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, OK_BODY, OLD)

    def do_POST(self) -> None:
        if self.path == "/v1/config/reload":
            self._send(412, {"error": "Reloading config file failed."}, OLD)
        else:
            self._send(404, {"error": "no"}, None)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def tiny_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_client_reads_hash_header_body_and_errors(tiny_server: str) -> None:
    client = HttpPodClient(timeout=5)
    got = client.get_config(tiny_server)
    assert (got.status, got.config_hash, got.body) == (200, OLD, OK_BODY)
    failed = client.reload(tiny_server)
    assert (failed.status, failed.config_hash) == (412, OLD)
    assert failed.body == {"error": "Reloading config file failed."}


def test_http_client_reports_unreachable_pod() -> None:
    reply = HttpPodClient(timeout=2).get_config("http://127.0.0.1:9")
    assert reply.status == 0 and reply.error


def test_a_pod_without_an_http_answer_is_not_sent_a_reload(pods: FakePods) -> None:
    pods.down.add(A)
    report = check_pod(PodTarget("a", A), NEW, pods)
    assert pods.calls == [("GET", A)]
    assert report.url == A and report.config_hash is None and report.error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_http_client_names_the_url_of_a_refused_connection() -> None:
    port = free_port()
    reply = HttpPodClient(timeout=2, connect_timeout=1).get_config(f"http://127.0.0.1:{port}")
    assert reply.status == 0
    assert reply.error == f"cannot connect to http://127.0.0.1:{port}: Connection refused"


def test_http_client_reports_a_pod_that_accepts_but_never_answers() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        reply = HttpPodClient(timeout=0.5, connect_timeout=0.5).get_config(url)
        assert time.monotonic() - started < 5
    assert reply.status == 0 and reply.error == f"GET {url}/v1/config: timed out"
