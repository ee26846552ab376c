"""TLS, mutual TLS and CORS on the REST port; certificates are generated at run time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import ovtest_models as models
import pytest
import requests
import trustme
from ovtest_server import ServerProcess, start_server, write_config

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("client@example.test")
    paths = {
        "ca": root / "ca.pem",
        "cert": root / "server.pem",
        "key": root / "server.key",
        "client": root / "client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    return paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tlsrepo")
    models.add_model(root / "add")
    write_config(root / "config.json", [{"name": "add", "base_path": "add"}])
    return root


def _tls_server(repo: Path, pki: dict[str, Path], mutual: bool) -> Iterator[ServerProcess]:
    args = ["--config_path", str(repo / "config.json"), "--file_system_poll_wait_seconds", "0",
            "--ssl_certificate", str(pki["cert"]), "--ssl_private_key", str(pki["key"])]
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE in the environment overrides `verify`
    session.verify = str(pki["ca"])
    if mutual:
        args += ["--ssl_ca_certificate", str(pki["ca"])]
        session.cert = str(pki["client"])
    server = start_server(args, workdir=repo, scheme="https", session=session)
    server.extra["session"] = session
    yield server
    session.close()
    assert server.stop() == 0, server.log()


@pytest.fixture(scope="module")
def tls_server(repo: Path, pki: dict[str, Path]) -> Iterator[ServerProcess]:
    yield from _tls_server(repo, pki, mutual=False)


@pytest.fixture(scope="module")
def mtls_server(repo: Path, pki: dict[str, Path]) -> Iterator[ServerProcess]:
    yield from _tls_server(repo, pki, mutual=True)


BODY = {"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[0, 0], [0, 0]]]}}


def test_https_serves_predictions(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    r = requests.post(f"{tls_server.url}/v1/models/add:predict", json=BODY, verify=str(pki["ca"]), timeout=10)
    assert r.status_code == 200
    assert r.json() == {"outputs": [[[1.0, 2.0], [3.0, 4.0]]]}


def test_https_serves_large_bodies(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    """A body over 64 KiB is read into one buffer by the inference route (http/direct.py)."""
    a = np.arange(3000 * 4, dtype=np.float32).reshape(3000, 2, 2)
    body = json.dumps({"inputs": {"a": a.tolist(), "b": a.tolist()}}).encode()
    assert len(body) > 100_000
    session = tls_server.extra["session"]
    for _ in range(2):  # the same keep-alive connection, after a large body
        r = session.post(f"{tls_server.url}/v1/models/add:predict", data=body, timeout=30)
        assert r.status_code == 200, r.text
        np.testing.assert_array_equal(np.array(r.json()["outputs"], dtype=np.float32), 2 * a)


def test_plain_http_is_refused_on_the_tls_port(tls_server: ServerProcess) -> None:
    plain = f"http://{tls_server.host}:{tls_server.port}/v2/health/live"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain, timeout=10)


def test_untrusted_server_certificate_is_rejected_by_clients(tls_server: ServerProcess) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/v2/health/live", timeout=10)  # system CAs only


def test_mutual_tls_accepts_a_client_certificate(mtls_server: ServerProcess, pki: dict[str, Path]) -> None:
    r = requests.get(f"{mtls_server.url}/v1/models/add", verify=str(pki["ca"]), cert=str(pki["client"]), timeout=10)
    assert r.status_code == 200
    assert r.json()["model_version_status"][0]["state"] == "AVAILABLE"


def test_mutual_tls_refuses_a_client_without_certificate(mtls_server: ServerProcess, pki: dict[str, Path]) -> None:
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"{mtls_server.url}/v1/models/add", verify=str(pki["ca"]), timeout=10)


# ----------------------------------------------------------------- CORS


@pytest.fixture(scope="module")
def cors_server(repo: Path) -> Iterator[ServerProcess]:
    server = start_server(
        ["--config_path", str(repo / "config.json"), "--file_system_poll_wait_seconds", "0",
         "--allowed_origins", "https://app.example.test", "--allowed_methods", "GET, POST",
         "--allowed_headers", "Content-Type, Authorization", "--allow_credentials"],
        workdir=repo,
    )
    yield server
    assert server.stop() == 0, server.log()


def test_cors_headers_on_responses(cors_server: ServerProcess) -> None:
    r = requests.get(f"{cors_server.url}/v1/models/add", headers={"Origin": "https://app.example.test"}, timeout=10)
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.test"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"


def test_cors_preflight(cors_server: ServerProcess) -> None:
    r = requests.options(
        f"{cors_server.url}/v1/models/add:predict",
        headers={
            "Origin": "https://app.example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type",
        },
        timeout=10,
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.test"


def test_default_cors_allows_any_origin(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    r = requests.get(f"{tls_server.url}/v2/health/live", verify=str(pki["ca"]), timeout=10)
    assert r.headers["Access-Control-Allow-Origin"] == "*"
