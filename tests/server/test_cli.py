"""Command-line rules (OVMS's messages), the demo model, and graceful shutdown."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from ovtest_server import start_server

from ovserve.server.cli import UsageError, build_parser, validate


def parse(*argv: str) -> object:
    return validate(build_parser().parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "port and rest_port cannot both be unset"),
        (("--rest_port", "9000", "--port", "9000", "--config_path", "c.json"), "port and rest_port cannot have the same values"),
        (("--rest_port", "9000"), "Use either config_path or model_path with model_name"),
        (("--rest_port", "9000", "--model_name", "m"), "Use either config_path or model_path with model_name"),
        (("--rest_port", "9000", "--config_path", "c.json", "--model_name", "m"), "Model parameters in CLI are exclusive with the config file"),
        (("--rest_port", "9000", "--config_path", "c.json", "--nireq", "2"), "Model parameters in CLI are exclusive with the config file"),
        (("--rest_port", "9000", "--config_path", "c.json", "--rest_workers", "1"), "rest_workers count should be from 2 to 10000"),
        (("--rest_port", "9000", "--config_path", "c.json", "--metrics_list", "ovms_streams"), "metrics_list requires metrics_enable"),
        (("--rest_port", "9000", "--config_path", "c.json", "--metrics_enable", "--metrics_list", "bogus"), "unknown metric(s) bogus"),
        (("--rest_port", "9000", "--config_path", "c.json", "--metrics_enable", "--metrics_list", "ovms_streams,,ovms_requests_fail"), "empty metric name"),
        (("--rest_port", "9000", "--model_name", "m", "--model_path", "/m", "--model_version_policy", "{bad"), "--model_version_policy: not valid JSON"),
        (("--rest_port", "9000", "--model_name", "m", "--model_path", "/m", "--shape", "(1,x)"), "--shape: The provided shape is in wrong format"),
        (("--rest_port", "9000", "--config_path", "c.json", "--ssl_certificate", "c.pem"), "--ssl_certificate and --ssl_private_key must be given together"),
        (("--rest_port", "9000", "--demo", "--config_path", "c.json"), "--demo is exclusive"),
        (("--rest_port", "9000", "--config_path", "c.json", "--ssl_certificate", "/no/cert.pem", "--ssl_private_key", "/no/key.pem"), "cannot use the TLS files"),
        (("--rest_port", "9000", "--config_path", "c.json", "--storage_cache_max_mb", "0"), "storage_cache_max_mb must be >= 1"),
        (("--rest_port", "9000", "--config_path", "c.json", "--storage_timeout_seconds", "0"), "storage_timeout_seconds must be > 0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v[:30],
)
def test_usage_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(*argv)
    assert message in str(info.value)


def test_single_model_flags_become_a_config_entry() -> None:
    settings = parse(
        "--rest_port", "9000", "--model_name", "m", "--model_path", "/models/m",
        "--nireq", "3", "--target_device", "AUTO", "--batch_size", "4",
        "--model_version_policy", '{"all": {}}', "--plugin_config", '{"NUM_STREAMS": 2}',
    )
    model = settings.single_model  # type: ignore[attr-defined]
    assert model.name == "m"
    assert model.base_path == "/models/m"
    assert model.nireq == 3
    assert model.target_device == "AUTO"
    assert model.batch_size == 4
    assert model.model_version_policy.kind == "all"
    assert dict(model.plugin_config) == {"NUM_STREAMS": 2}


def test_model_path_may_be_a_storage_url() -> None:
    settings = parse("--rest_port", "9000", "--model_name", "m", "--model_path", "s3://bucket/models/m")
    assert settings.single_model.base_path == "s3://bucket/models/m"  # type: ignore[attr-defined]


def test_usage_error_exits_2_with_message() -> None:
    r = subprocess.run([sys.executable, "-m", "ovserve.server", "--rest_port", "9000"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Use either config_path or model_path with model_name" in r.stderr


def test_demo_model_serves_and_sigterm_drains_in_flight(tmp_path: Path) -> None:
    server = start_server(["--demo", "--demo_path", str(tmp_path / "demo")], workdir=tmp_path)
    try:
        assert "curl" in server.log()
        body = {"inputs": {"a": [[1, 2, 3, 4]], "b": [[10, 20, 30, 40]]}}
        r = requests.post(f"{server.url}/v1/models/demo:predict", json=body, timeout=10)
        assert r.json() == {"outputs": [[11.0, 22.0, 33.0, 44.0]]}
        results: list[int] = []
        big = json.dumps(
            {"inputs": {"a": [[1.0, 2, 3, 4]] * 200_000, "b": [[1.0, 1, 1, 1]] * 200_000}}
        ).encode()
        sent = threading.Event()

        def slow_client() -> None:
            with socket.create_connection((server.host, server.port), timeout=60) as sock:
                head = (f"POST /v1/models/demo:predict HTTP/1.1\r\nHost: x\r\n"
                        f"Content-Length: {len(big)}\r\n\r\n").encode()
                sock.sendall(head + big)
                sent.set()
                reply = sock.makefile("rb").readline()
                results.append(int(reply.split()[1]) if reply else -1)

        thread = threading.Thread(target=slow_client)
        thread.start()
        assert sent.wait(30)
        # The whole request is on the wire; SIGTERM now must still let it finish.
        code = server.stop()
        thread.join(60)
        assert code == 0, server.log()
        assert "Shutdown complete" in server.log()
        assert results == [200]
    finally:
        server.stop()
