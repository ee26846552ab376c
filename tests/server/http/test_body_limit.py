"""Request-body size limits (``--max_request_mb``) in every dialect, over real HTTP.

TF-Serving v1 and KServe v2 refuse an oversized body with 413 and a JSON error; the MindSpore
dialect answers 200 with ``{"error_msg": "http message is bigger than <bytes>"}``. A body with a
``Content-Length`` over the limit is refused as soon as the headers arrive; a chunked body by the
chunk that crosses the limit. A body of exactly the limit is served normally.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from ovtest_server import ServerProcess

pytestmark = pytest.mark.timeout(180)

LIMIT = 1024 * 1024  # --max_request_mb 1


@dataclass(frozen=True)
class Dialect:
    name: str
    path: str
    body: bytes  # a valid request for the add model; sum is [[11, 22], [33, 44]]
    refused_status: int
    refused_body: dict[str, str]

    def expect_served(self, r: requests.Response) -> None:
        assert r.status_code == 200, r.text
        doc = r.json()
        if self.name == "tfs":
            assert doc == {"outputs": [[[11.0, 22.0], [33.0, 44.0]]]}
        elif self.name == "kserve":
            assert doc["outputs"][0]["data"] == [11.0, 22.0, 33.0, 44.0]
        else:
            assert doc == {"instances": [{"sum": [[11.0, 22.0], [33.0, 44.0]]}]}

    def expect_refused(self, r: requests.Response) -> None:
        assert r.status_code == self.refused_status, r.text
        assert r.headers["Content-Type"] == "application/json"
        assert r.json() == self.refused_body


A = [[[1, 2], [3, 4]]]
B = [[[10, 20], [30, 40]]]
TOO_LARGE = f"Request body is larger than the limit of {LIMIT} bytes"
DIALECTS = [
    Dialect("tfs", "/v1/models/add:predict",
            json.dumps({"inputs": {"a": A, "b": B}}).encode(), 413, {"error": TOO_LARGE}),
    Dialect("kserve", "/v2/models/add/infer",
            json.dumps({"inputs": [
                {"name": "a", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "b", "shape": [1, 2, 2], "datatype": "FP32", "data": [10, 20, 30, 40]},
            ]}).encode(), 413, {"error": TOO_LARGE}),
    Dialect("mindspore", "/model/add:predict",
            json.dumps({"instances": {"a": [[1.0, 2.0], [3.0, 4.0]],
                                      "b": [[10.0, 20.0], [30.0, 40.0]]}}).encode(),
            200, {"error_msg": f"http message is bigger than {LIMIT}"}),
]


def padded(body: bytes, size: int) -> bytes:
    """The same JSON document, grown to ``size`` bytes with trailing whitespace."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.fixture(scope="module")
def server(limited_server: ServerProcess) -> ServerProcess:
    """Every test here runs against the server with the 1 MiB limit (conftest.py)."""
    return limited_server


@pytest.fixture(params=DIALECTS, ids=lambda d: d.name)
def dialect(request: pytest.FixtureRequest) -> Dialect:
    assert isinstance(request.param, Dialect)
    return request.param


def test_small_body_is_served(server: ServerProcess, dialect: Dialect) -> None:
    dialect.expect_served(requests.post(server.url + dialect.path, data=dialect.body, timeout=30))


def test_body_of_exactly_the_limit_is_served(server: ServerProcess, dialect: Dialect) -> None:
    body = padded(dialect.body, LIMIT)
    dialect.expect_served(requests.post(server.url + dialect.path, data=body, timeout=30))


def test_body_one_byte_over_the_limit_is_refused(server: ServerProcess, dialect: Dialect) -> None:
    body = padded(dialect.body, LIMIT + 1)
    dialect.expect_refused(requests.post(server.url + dialect.path, data=body, timeout=30))


def test_large_body_is_refused(server: ServerProcess, dialect: Dialect) -> None:
    body = padded(dialect.body, 2 * LIMIT)
    r = requests.post(server.url + dialect.path, data=body, timeout=30)
    dialect.expect_refused(r)
    assert r.headers["Connection"] == "close"


def test_under_the_limit_is_not_a_size_error(server: ServerProcess, dialect: Dialect) -> None:
    """Just under the limit, a body the model cannot take gets its normal error, not a size one."""
    body = padded(b'{"nonsense": 1}', LIMIT - 1)
    r = requests.post(server.url + dialect.path, data=body, timeout=30)
    assert r.status_code in (200, 400), r.text
    text = r.text
    assert "bigger than" not in text and "larger than" not in text


def test_chunked_body_over_the_limit_is_refused(server: ServerProcess, dialect: Dialect) -> None:
    piece = b" " * 65536

    def chunks() -> Iterator[bytes]:
        yield dialect.body
        for _ in range(LIMIT // len(piece) + 8):
            yield piece

    r = requests.post(server.url + dialect.path, data=chunks(), timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in r.request.headers
    dialect.expect_refused(r)


def test_chunked_body_under_the_limit_is_served(server: ServerProcess, dialect: Dialect) -> None:
    def chunks() -> Iterator[bytes]:
        yield dialect.body
        for _ in range(8):
            yield b" " * 65536

    r = requests.post(server.url + dialect.path, data=chunks(), timeout=30)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    dialect.expect_served(r)


# ----------------------------------------------------------------- refused early (raw sockets)


def _read_response(sock: socket.socket, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body, read within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed inside the response body"
        rest += piece
    return status, headers, rest[:length]


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def _request_head(server: ServerProcess, path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {server.host}:{server.port}",
             "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_content_length_over_limit_is_refused_before_the_body(
    server: ServerProcess, dialect: Dialect
) -> None:
    """The answer comes while most of the announced body has not been sent (and never is)."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_request_head(server, dialect.path, f"Content-Length: {8 * LIMIT}"))
        sock.sendall(dialect.body)
        started = time.monotonic()
        status, headers, body = _read_response(sock)
        assert time.monotonic() - started < 5
        assert status == dialect.refused_status
        assert headers["connection"] == "close"
        assert json.loads(body) == dialect.refused_body
        assert _closed(sock)


def test_expect_continue_over_limit_gets_the_refusal_not_continue(
    server: ServerProcess, dialect: Dialect
) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_request_head(server, dialect.path, f"Content-Length: {2 * LIMIT}",
                                   "Expect: 100-continue"))
        status, _, body = _read_response(sock)
        assert status == dialect.refused_status
        assert json.loads(body) == dialect.refused_body


def test_chunked_over_limit_is_refused_before_the_body_ends(
    server: ServerProcess, dialect: Dialect
) -> None:
    """Chunks past the limit, no terminating chunk: the answer must still come."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_request_head(server, dialect.path, "Transfer-Encoding: chunked"))
        piece = b" " * 65536
        sock.sendall(b"%x\r\n%s\r\n" % (len(dialect.body), dialect.body))
        for _ in range(LIMIT // len(piece) + 1):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        status, headers, body = _read_response(sock)
        assert status == dialect.refused_status
        assert headers["connection"] == "close"
        assert json.loads(body) == dialect.refused_body
        assert _closed(sock)


def test_one_huge_chunk_is_refused(server: ServerProcess, dialect: Dialect) -> None:
    """A single chunk announcing far more than the limit is refused with the dialect's error."""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(_request_head(server, dialect.path, "Transfer-Encoding: chunked"))
        sock.sendall(b"%x\r\n" % (64 * LIMIT) + dialect.body + b" " * LIMIT)
        status, _, body = _read_response(sock)
        assert status == dialect.refused_status
        assert json.loads(body) == dialect.refused_body


def test_server_keeps_serving_after_refusals(server: ServerProcess, dialect: Dialect) -> None:
    with requests.Session() as session:
        dialect.expect_refused(session.post(server.url + dialect.path,
                                            data=padded(dialect.body, 3 * LIMIT), timeout=30))
        dialect.expect_served(session.post(server.url + dialect.path, data=dialect.body,
                                           timeout=30))
