"""``ovserve-operator`` command line: namespaces, flags, and the installed console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ovserve.operator.cli import parse_options

BIN = Path(sys.executable).parent


def test_namespaces_from_flags_and_commas() -> None:
    args, namespaces = parse_options(["-n", "ml", "--namespace", "a,b", "--log-level", "DEBUG"])
    assert namespaces == ["ml", "a", "b"]
    assert args.log_level == "DEBUG" and args.liveness_port == 8080


def test_namespaces_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCH_NAMESPACE", "ml, staging")
    assert parse_options([])[1] == ["ml", "staging"]


def test_log_level_from_environment(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert parse_options(["-n", "ml"])[0].log_level == "WARNING"
    monkeypatch.setenv("LOG_LEVEL", "trace")  # would crash logging.setLevel later
    with pytest.raises(SystemExit):
        parse_options(["-n", "ml"])
    assert "$LOG_LEVEL: 'TRACE' is not one of" in capsys.readouterr().err


def test_all_namespaces() -> None:
    args, namespaces = parse_options(["--all-namespaces", "--status-interval", "5"])
    assert args.all_namespaces and namespaces == [] and args.status_interval == 5


@pytest.mark.parametrize(("argv", "message"), [
    ([], "give --namespace NS (or $WATCH_NAMESPACE) or --all-namespaces"),
    (["-n", "a", "-A"], "not allowed with argument"),
    (["-n", "a", "--reload-timeout", "0"], "--reload-timeout must be positive"),
    (["-n", "a", "--liveness-port", "70000"], "--liveness-port must be 0..65535"),
    (["-n", "a", "--metrics-port", "-1"], "--metrics-port must be 0..65535"),
    (["-n", "a", "--log-format", "xml"], "invalid choice: 'xml'"),
    (["-n", "a", "--connect-timeout", "0"], "--connect-timeout must be positive"),
])
def test_usage_errors(argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("WATCH_NAMESPACE", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_help() -> None:
    out = subprocess.run([str(BIN / "ovserve-operator"), "--help"], capture_output=True,
                         text=True, timeout=60, check=True)
    assert "--all-namespaces" in out.stdout and "--reload-timeout" in out.stdout


def test_log_format_metrics_and_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    args, _ = parse_options(["-n", "a"])
    assert (args.log_format, args.metrics_port, args.connect_timeout) == ("text", 0, 5.0)
    monkeypatch.setenv("LOG_FORMAT", "JSON")
    args, _ = parse_options(["-n", "a", "--metrics-port", "8081", "--connect-timeout", "2"])
    assert (args.log_format, args.metrics_port, args.connect_timeout) == ("json", 8081, 2.0)


def test_server_image_from_flag_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from ovserve.operator.resources import DEFAULT_IMAGE

    monkeypatch.delenv("OVSERVE_SERVER_IMAGE", raising=False)
    assert parse_options(["-A"])[0].server_image == DEFAULT_IMAGE
    monkeypatch.setenv("OVSERVE_SERVER_IMAGE", "example.org/ovserve-server:2")
    assert parse_options(["-A"])[0].server_image == "example.org/ovserve-server:2"
    args = parse_options(["-A", "--server-image", "example.org/ovserve-server:3"])[0]
    assert args.server_image == "example.org/ovserve-server:3"
