"""HTTP/1.1 on the wire: framing, keep-alive, pipelining and abuse, over raw sockets.

These tests speak bytes to a real server and parse its answers themselves (:class:`Client`), so
that they pin what any HTTP client sees of the connection layer (http/protocol.py, which
replaced Tornado's ``HTTP1Connection``; where the two differ, the test says so). Every socket
has a short timeout, so a server that hangs fails a test instead of blocking the run.

Covered: keep-alive across the direct inference routes (``:predict``, ``/infer``) and the
application's handlers, pipelining (one write, and a body that trickles in), ``Connection: close``,
HTTP/1.0, chunked request bodies, ``Expect: 100-continue``, ``HEAD``, malformed requests, huge
headers, the body limit on a kept-alive or pipelined connection, clients that leave early, a
large body in pieces, the response headers, and a request path that is not UTF-8.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import numpy as np
import pytest
from ovtest_server import ServerProcess

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 10.0
"""Every socket operation's limit: a hang fails the test."""

PREDICT = "/v1/models/add:predict"
INFER = "/v2/models/add/infer"
STATUS = "/v1/models/add"
READY = "/v2/health/ready"
LIMIT = 1024 * 1024  # --max_request_mb 1 (the limited server)
TOO_LARGE = f"Request body is larger than the limit of {LIMIT} bytes"


# ----------------------------------------------------------------- a small HTTP/1.1 client


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive); it must appear at most once."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times: {self.headers}"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One raw TCP connection to the server, with a buffer for what was read past a response."""

    def __init__(self, server: ServerProcess, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        piece = self.sock.recv(65536)
        if not piece:
            raise EOFError(f"connection closed; unparsed: {bytes(self.buf)!r}")
        self.buf += piece

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            assert len(self.buf) < 1 << 20, "no line end in a megabyte"
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _until_eof(self) -> bytes:
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionResetError):
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def read_response(self, head: bool = False) -> Response:
        """The next response: status line, headers, then a body framed by ``Content-Length``,
        chunked, or by the end of the connection; none for ``HEAD`` (``head``), 1xx, 204, 304."""
        version, status, reason = [*self._line().decode("latin-1").split(" ", 2), ""][:3]
        assert version.startswith("HTTP/1."), version
        headers: list[tuple[str, str]] = []
        while line := self._line():
            name, colon, value = line.decode("latin-1").partition(":")
            assert colon and name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        response = Response(version, int(status), reason, headers, b"")
        if head or response.status < 200 or response.status in (204, 304):
            return response
        encoding = response.header("Transfer-Encoding")
        length = response.header("Content-Length")
        if encoding is not None:
            assert encoding.lower() == "chunked", encoding
            assert length is None, "both Transfer-Encoding and Content-Length"
            parts = []
            while size := int(self._line().split(b";")[0], 16):
                parts.append(self._exactly(size))
                assert self._line() == b""
            while self._line():  # trailers
                pass
            response.body = b"".join(parts)
        elif length is not None:
            response.body = self._exactly(int(length))
        else:
            response.body = self._until_eof()
        return response

    def closed_by_server(self) -> bool:
        """True when nothing more comes and the server has closed (EOF or reset)."""
        if self.buf:
            return False
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True


def request(method: str, path: str, body: bytes | None = None, *headers: str,
            version: str = "HTTP/1.1", length: bool = True) -> bytes:
    """A request's bytes; ``Content-Length`` is added for a body unless ``length`` is False."""
    lines = [f"{method} {path} {version}"]
    if version == "HTTP/1.1":
        lines.append("Host: test")
    lines += headers
    if body is not None and length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def v1_body(a: float, b: float = 10.0) -> bytes:
    """A v1 predict of ``add`` with every element of ``a`` and ``b`` set: the sum is ``a + b``."""
    return json.dumps({"inputs": {"a": [[[a, a], [a, a]]], "b": [[[b, b], [b, b]]]}}).encode()


def v1_sum(value: float) -> dict[str, Any]:
    return {"outputs": [[[value, value], [value, value]]]}


V1_BODY = json.dumps({"inputs": {"a": [[[1, 2], [3, 4]]], "b": [[[10, 20], [30, 40]]]}}).encode()
V1_ANSWER = {"outputs": [[[11.0, 22.0], [33.0, 44.0]]]}


def v2_body(a: Sequence[float], b: Sequence[float]) -> bytes:
    n = len(a) // 4
    return json.dumps({"inputs": [
        {"name": "a", "shape": [n, 2, 2], "datatype": "FP32", "data": list(a)},
        {"name": "b", "shape": [n, 2, 2], "datatype": "FP32", "data": list(b)},
    ]}).encode()


V2_BODY = v2_body([1, 2, 3, 4], [10, 20, 30, 40])


def v2_data(response: Response) -> list[float]:
    """The ``sum`` output of a v2 infer answer, checked for name, type and shape."""
    assert response.status == 200, response
    doc = response.json()
    assert doc["model_name"] == "add"
    (out,) = doc["outputs"]
    assert (out["name"], out["datatype"]) == ("sum", "FP32")
    assert out["shape"][1:] == [2, 2]
    data: list[float] = out["data"]
    assert len(data) == 4 * out["shape"][0]
    return data


def expect_json(response: Response, status: int = 200) -> Any:
    assert response.status == status, response
    assert response.header("Content-Type") == "application/json", response
    assert response.header("Content-Length") == str(len(response.body))
    return response.json()


def expect_status_doc(response: Response) -> None:
    """The answer to ``GET /v1/models/add``."""
    doc = expect_json(response)
    assert [(s["version"], s["state"]) for s in doc["model_version_status"]] == [("1", "AVAILABLE")]


def expect_ready(response: Response) -> None:
    """The answer to ``GET /v2/health/ready``: 200, an empty body."""
    assert response.status == 200, response
    assert response.header("Content-Length") == "0"
    assert response.body == b""


def assert_serves(server: ServerProcess) -> None:
    """A fresh connection gets a status answer and a prediction (the server is still fine)."""
    with Client(server) as c:
        c.send(request("GET", STATUS))
        expect_status_doc(c.read_response())
        c.send(request("POST", PREDICT, V1_BODY))
        assert expect_json(c.read_response()) == V1_ANSWER


def assert_no_traceback(server: ServerProcess, since: int = 0) -> None:
    """Nothing went wrong in the server since its log was ``since`` characters long."""
    log = server.log()[since:]
    assert "Traceback" not in log, log
    assert "Uncaught exception" not in log, log


# ----------------------------------------------------------------- keep-alive and pipelining


def test_keep_alive_serves_many_requests_on_one_connection(server: ServerProcess) -> None:
    with Client(server) as c:
        for round_ in range(3):
            c.send(request("GET", STATUS))
            expect_status_doc(c.read_response())
            c.send(request("POST", PREDICT, v1_body(round_)))
            r = c.read_response()
            assert expect_json(r) == v1_sum(round_ + 10.0)
            assert r.header("Connection") is None  # HTTP/1.1: persistent unless said otherwise
            c.send(request("POST", INFER, v2_body([round_] * 4, [1, 2, 3, 4])))
            r = c.read_response()
            expect_json(r)
            assert v2_data(r) == [round_ + 1.0, round_ + 2.0, round_ + 3.0, round_ + 4.0]
            c.send(request("GET", READY))
            expect_ready(c.read_response())
        assert not c.buf


def test_pipelined_mixed_requests_are_answered_in_order(server: ServerProcess) -> None:
    """Five requests in one write, each answered by its own answer, in order: the inference
    routes (served off the connection) and the application's handlers interleaved."""
    data = (request("POST", PREDICT, v1_body(1))
            + request("GET", STATUS)
            + request("POST", INFER, v2_body([2] * 4, [0.5] * 4))
            + request("GET", "/v2/models/add")
            + request("GET", READY)
            + request("POST", PREDICT, v1_body(3)))
    with Client(server) as c:
        c.send(data)
        answers = [c.read_response() for _ in range(6)]
        assert not c.buf
    assert expect_json(answers[0]) == v1_sum(11.0)
    expect_status_doc(answers[1])
    assert v2_data(answers[2]) == [2.5] * 4
    assert expect_json(answers[3])["name"] == "add"
    expect_ready(answers[4])
    assert expect_json(answers[5]) == v1_sum(13.0)


@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_pipelined_request_behind_a_body_that_trickles_in(server: ServerProcess, path: str) -> None:
    """The first body arrives in three pieces 20 ms apart; the second request rides in the last."""
    first = request("POST", path, v1_body(5) if path == PREDICT else v2_body([5] * 4, [1] * 4))
    head_end = first.index(b"\r\n\r\n") + 4
    body = first[head_end:]
    cut1, cut2 = len(body) // 3, 2 * len(body) // 3
    pieces = [first[:head_end] + body[:cut1], body[cut1:cut2],
              body[cut2:] + request("GET", STATUS)]
    with Client(server) as c:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(0.02)
            c.send(piece)
        r = c.read_response()
        if path == PREDICT:
            assert expect_json(r) == v1_sum(15.0)
        else:
            assert v2_data(r) == [6.0] * 4
        expect_status_doc(c.read_response())
        # and the connection is still in step
        c.send(request("GET", READY))
        expect_ready(c.read_response())


# ----------------------------------------------------------------- closing


def test_half_closed_client_gets_its_answers(server: ServerProcess) -> None:
    """A client that shuts its sending side after its requests (``shutdown(SHUT_WR)``, as
    ``nc -N`` does) gets both answers, then the server closes."""
    with Client(server) as c:
        c.send(request("POST", PREDICT, V1_BODY) + request("GET", STATUS))
        c.sock.shutdown(socket.SHUT_WR)
        assert expect_json(c.read_response()) == V1_ANSWER
        expect_status_doc(c.read_response())
        assert c.closed_by_server()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", STATUS, None),
    ("POST", PREDICT, V1_BODY),
    ("POST", INFER, V2_BODY),
], ids=["status", "predict", "infer"])
def test_connection_close_is_answered_then_closed(
    server: ServerProcess, method: str, path: str, body: bytes | None
) -> None:
    with Client(server) as c:
        c.send(request(method, path, body, "Connection: close"))
        r = c.read_response()
        assert r.status == 200
        assert r.header("Connection") == "close"
        assert r.header("Content-Length") == str(len(r.body))
        json.loads(r.body)
        assert c.closed_by_server()


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", STATUS, None),
    ("POST", PREDICT, V1_BODY),
], ids=["status", "predict"])
def test_http10_without_keep_alive_is_answered_then_closed(
    server: ServerProcess, method: str, path: str, body: bytes | None
) -> None:
    with Client(server) as c:
        c.send(request(method, path, body, version="HTTP/1.0"))
        r = c.read_response()
        assert r.status == 200
        assert json.loads(r.body)
        # The current server answers with an HTTP/1.1 status line and no Connection header:
        # closing is HTTP/1.0's default.
        assert (r.header("Connection") or "close").lower() == "close"
        assert c.closed_by_server()


def test_http10_keep_alive_keeps_the_connection(server: ServerProcess) -> None:
    with Client(server) as c:
        c.send(request("GET", STATUS, None, "Connection: keep-alive", version="HTTP/1.0"))
        r = c.read_response()
        expect_status_doc(r)
        assert (r.header("Connection") or "").lower() == "keep-alive"
        c.send(request("POST", PREDICT, V1_BODY, "Connection: keep-alive", version="HTTP/1.0"))
        r = c.read_response()
        assert expect_json(r) == V1_ANSWER
        assert (r.header("Connection") or "").lower() == "keep-alive"
        # the last request asks for no keep-alive: answered, then closed
        c.send(request("GET", STATUS, None, version="HTTP/1.0"))
        expect_status_doc(c.read_response())
        assert c.closed_by_server()


# ----------------------------------------------------------------- request bodies


def _chunked(body: bytes, parts: int) -> list[bytes]:
    step = -(-len(body) // parts)
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in (body[i:i + step] for i in range(0, len(body), step))]
    chunks[-1] += b"0\r\n\r\n"
    return chunks


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_chunked_request_body(server: ServerProcess, path: str, parts: int) -> None:
    body = V1_BODY if path == PREDICT else V2_BODY
    with Client(server) as c:
        c.send(request("POST", path, None, "Transfer-Encoding: chunked", "Content-Type: application/json"))
        for chunk in _chunked(body, parts):
            time.sleep(0.005)
            c.send(chunk)
        r = c.read_response()
        if path == PREDICT:
            assert expect_json(r) == V1_ANSWER
        else:
            assert v2_data(r) == [11.0, 22.0, 33.0, 44.0]
        # the terminating chunk was consumed: the next request is parsed from its first byte
        c.send(request("GET", STATUS))
        expect_status_doc(c.read_response())


def test_body_of_a_get_is_skipped_not_parsed_as_a_request(server: ServerProcess) -> None:
    with Client(server) as c:
        c.send(request("GET", STATUS, b"GET /nope HTTP/1.1\r\n\r\n") + request("GET", READY))
        expect_status_doc(c.read_response())
        expect_ready(c.read_response())


def _chunked_with(extension: bytes, trailer: bytes) -> bytes:
    return (request("POST", PREDICT, None, "Transfer-Encoding: chunked")
            + b"%x%s\r\n%s\r\n0%s\r\n%s\r\n" % (len(V1_BODY), extension, V1_BODY, extension, trailer))


def test_chunk_extensions_are_ignored(server: ServerProcess) -> None:
    """RFC 9112 7.1.1: a recipient must ignore unrecognized chunk extensions (Tornado's
    HTTP1Connection answered 400 'invalid chunk size')."""
    with Client(server) as c:
        c.send(_chunked_with(b";name=value", b"") + request("GET", READY))
        assert expect_json(c.read_response()) == V1_ANSWER
        expect_ready(c.read_response())


def test_chunked_trailers_are_accepted(server: ServerProcess) -> None:
    """RFC 9112 7.1.2 allows a trailer section (Tornado's HTTP1Connection answered 400
    'improperly terminated chunked request')."""
    with Client(server) as c:
        c.send(_chunked_with(b"", b"X-Checksum: 1\r\n") + request("GET", READY))
        assert expect_json(c.read_response()) == V1_ANSWER
        expect_ready(c.read_response())


@pytest.mark.parametrize("size", ["small", "large"])
def test_expect_100_continue(server: ServerProcess, size: str) -> None:
    """``100 Continue`` comes before any body byte is sent; then the answer. A large body (over
    64 KiB) takes the server's other body path."""
    if size == "small":
        body, n = V1_BODY, 1
    else:
        n = 3000
        a = np.arange(4 * n, dtype=np.float32).reshape(n, 2, 2)
        body = json.dumps({"inputs": {"a": a.tolist(), "b": a.tolist()}}).encode()
        assert len(body) > 64 * 1024
    with Client(server) as c:
        c.send(request("POST", PREDICT, None, "Expect: 100-continue", f"Content-Length: {len(body)}"))
        interim = c.read_response()
        assert interim.status == 100  # the reason text varies ("Continue", Tornado's "(Continue)")
        assert interim.body == b""
        c.send(body)
        r = c.read_response()
        doc = expect_json(r)
        if size == "small":
            assert doc == V1_ANSWER
        else:
            assert np.array(doc["outputs"]).shape == (n, 2, 2)
            assert doc["outputs"][-1] == [[2.0 * (4 * n - 4), 2.0 * (4 * n - 3)],
                                          [2.0 * (4 * n - 2), 2.0 * (4 * n - 1)]]
        c.send(request("GET", READY))
        expect_ready(c.read_response())


def test_large_body_in_pieces_then_a_request_on_the_same_connection(server: ServerProcess) -> None:
    """About 600 KB of v2 infer sent in 64 KiB pieces, with a small request right behind it in
    the same stream (so it straddles a piece boundary with the body's tail)."""
    n = 11000
    a = np.arange(4 * n, dtype=np.float32)
    big = v2_body(a.tolist(), [0.5] * (4 * n))
    assert 500_000 < len(big) < 700_000
    data = request("POST", INFER, big) + request("POST", PREDICT, v1_body(7))
    with Client(server) as c:
        for i in range(0, len(data), 65536):
            c.send(data[i:i + 65536])
        r = c.read_response()
        out = v2_data(r)
        assert len(out) == 4 * n
        for i in (0, 1, 4 * n // 2 + 3, 4 * n - 1):
            assert out[i] == float(np.float32(i) + np.float32(0.5))
        assert expect_json(c.read_response()) == v1_sum(17.0)
        # still usable afterwards
        c.send(request("GET", STATUS))
        expect_status_doc(c.read_response())


# ----------------------------------------------------------------- HEAD and headers


@pytest.mark.parametrize("path", [STATUS, READY])
def test_head_has_no_body_and_the_connection_stays_in_step(server: ServerProcess, path: str) -> None:
    """HEAD is not a method of these routes: the server answers 406 (OVMS's "Unsupported
    method"), with the Content-Length its body would have, and no body bytes on the wire."""
    with Client(server) as c:
        c.send(request("HEAD", path) + request("GET", STATUS))
        head = c.read_response(head=True)
        assert head.status == 406
        assert head.header("Content-Type") == "application/json"
        assert head.header("Content-Length") == str(len(b'{"error":"Unsupported method"}'))
        assert head.header("Connection") is None
        expect_status_doc(c.read_response())  # parsed right after the HEAD answer's headers
        assert not c.buf


@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_inference_response_headers(server: ServerProcess, path: str) -> None:
    with Client(server) as c:
        c.send(request("GET", STATUS))
        status = c.read_response()
        c.send(request("POST", path, V1_BODY if path == PREDICT else V2_BODY))
        r = c.read_response()
    assert r.status == 200
    assert r.reason == "OK"
    assert r.header("Content-Type") == "application/json"
    assert r.header("Content-Length") == str(len(r.body))
    assert r.header("Transfer-Encoding") is None
    date = r.header("Date")
    assert date is not None
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 60
    server_name = r.header("Server")
    assert server_name
    assert server_name == status.header("Server")  # the same as the application's handlers send
    json.loads(r.body)


# ----------------------------------------------------------------- malformed and abusive requests


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    # both framings at once (request smuggling): refused, never one of them picked
    b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n0\r\n\r\n" % (len(V1_BODY), V1_BODY),
    request("POST", PREDICT, V1_BODY, "Content-Length: 3"),  # two unequal Content-Lengths
    b"GET /v1/models/add HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
], ids=["request-line", "header-line", "length-text", "length-negative", "chunk-size",
        "length-and-chunked", "two-lengths", "no-host"])
def test_malformed_request_gets_400_and_a_close(server: ServerProcess, data: bytes) -> None:
    """A request that cannot be framed gets a 400 with ``Connection: close`` and the connection
    closes; the request pipelined behind it is never answered. (Tornado's HTTP1Connection sent a
    bare ``HTTP/1.1 400 Bad Request`` without headers.)"""
    since = len(server.log())
    with Client(server) as c:
        c.send(data + request("GET", STATUS))
        r = c.read_response()
        assert r.status == 400, r
        assert r.header("Connection") == "close"
        assert c.closed_by_server()
    assert_serves(server)
    assert_no_traceback(server, since)


def test_huge_request_headers_are_refused(server: ServerProcess) -> None:
    """One 70 KiB header, over the 64 KiB limit on a request head: 431 and a close. (Tornado's
    HTTP1Connection closed the connection without answering.)"""
    since = len(server.log())
    with Client(server) as c:
        c.send(request("GET", STATUS, None, "X-Huge: " + "a" * (70 * 1024)))
        r = c.read_response()
        assert r.status == 431, r
        assert r.header("Connection") == "close"
        assert c.closed_by_server()
    assert_serves(server)
    assert_no_traceback(server, since)


@pytest.mark.parametrize("path", ["/v1/models/%ff:predict", "/v2/models/%ff/infer"])
def test_path_not_utf8_on_an_inference_route(server: ServerProcess, path: str) -> None:
    """``%ff`` is no UTF-8: 400 with the dialect's JSON error. The server refuses it before
    reading the body, announces ``Connection: close`` and closes: the request pipelined behind it
    is not answered (reasonable HTTP; pinned)."""
    with Client(server) as c:
        c.send(request("POST", path, V1_BODY) + request("GET", STATUS))
        r = c.read_response()
        assert expect_json(r, 400) == {"error": "Bad Request"}
        assert r.header("Connection") == "close"
        assert c.closed_by_server()
    assert_serves(server)


def test_path_not_utf8_on_a_handler_route_keeps_the_connection(server: ServerProcess) -> None:
    """The same on a GET route (a RequestHandler): 400, and the connection stays usable."""
    with Client(server) as c:
        c.send(request("GET", "/v1/models/%ff") + request("GET", STATUS))
        r = c.read_response()
        assert expect_json(r, 400) == {"error": "Bad Request"}
        assert r.header("Connection") is None
        expect_status_doc(c.read_response())


# ----------------------------------------------------------------- clients that leave early


def _linger_reset(sock: socket.socket) -> None:
    """Close with a reset (RST) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _many_predicts(count: int = 20, n: int = 2000) -> bytes:
    a = np.arange(4 * n, dtype=np.float32).reshape(n, 2, 2).tolist()
    body = json.dumps({"inputs": {"a": a, "b": a}}).encode()
    return request("POST", PREDICT, body) * count


LEAVERS: dict[str, tuple[bytes, bool]] = {
    # name: (what is sent before leaving, leave with a reset)
    "half-request-line": (b"POST /v1/models/ad", False),
    "half-headers": (b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Le", False),
    "half-body": (request("POST", PREDICT, V1_BODY)[:-10], False),
    "half-large-body": (b"POST /v1/models/add:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 300000"
                        b"\r\n\r\n" + b" " * 100_000, False),
    "half-chunked": (request("POST", INFER, None, "Transfer-Encoding: chunked") + _chunked(V2_BODY, 3)[0],
                     False),
    "half-body-reset": (request("POST", INFER, V2_BODY)[:-10], True),
    "in-flight": (_many_predicts(), False),
    "in-flight-reset": (_many_predicts(), True),
    "expect-then-leave": (request("POST", PREDICT, None, "Expect: 100-continue",
                                  f"Content-Length: {len(V1_BODY)}"), False),
}


@pytest.mark.parametrize("name", list(LEAVERS))
def test_a_client_that_leaves_early_does_not_disturb_the_server(server: ServerProcess, name: str) -> None:
    """The client sends part of a request (or whole ones, still being served) and disconnects.
    Afterwards a new connection is served, and nothing went wrong in the server. (A request left
    counted in flight would also make the module's server shutdown slow and fail.)"""
    data, reset = LEAVERS[name]
    since = len(server.log())
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    try:
        sock.sendall(data)
        time.sleep(0.05)  # let the server start on it
        if reset:
            _linger_reset(sock)
    finally:
        sock.close()
    assert_serves(server)
    time.sleep(0.1)  # what the server does with the closed connection shows in its log
    assert_serves(server)
    assert_no_traceback(server, since)


# ----------------------------------------------------------------- the body limit on a live connection


def _expect_refused(c: Client, started: float) -> None:
    r = c.read_response()
    assert time.monotonic() - started < 5, "the refusal waited for a body that never came"
    assert expect_json(r, 413) == {"error": TOO_LARGE}
    assert r.header("Connection") == "close"
    assert c.closed_by_server()


@pytest.mark.parametrize("path", [PREDICT, INFER])
def test_body_over_the_limit_on_a_kept_alive_connection(limited_server: ServerProcess, path: str) -> None:
    """After a served request, the headers of one announcing 2 MiB (and no body byte): 413 at
    once, ``Connection: close``, the JSON error, then the close. (test_body_limit.py covers the
    same on a fresh connection.)"""
    body = V1_BODY if path == PREDICT else V2_BODY
    with Client(limited_server) as c:
        c.send(request("POST", path, body))
        assert c.read_response().status == 200
        c.send(request("POST", path, None, "Content-Type: application/json",
                       f"Content-Length: {2 * LIMIT}"))
        _expect_refused(c, time.monotonic())
    assert_serves(limited_server)


def test_body_over_the_limit_pipelined_behind_served_requests(limited_server: ServerProcess) -> None:
    """In one write: a predict, a status GET, then the head of a 2 MiB predict. The first two are
    answered, then the 413, then the close."""
    with Client(limited_server) as c:
        started = time.monotonic()
        c.send(request("POST", PREDICT, V1_BODY) + request("GET", STATUS)
               + request("POST", INFER, None, f"Content-Length: {2 * LIMIT}"))
        assert expect_json(c.read_response()) == V1_ANSWER
        expect_status_doc(c.read_response())
        _expect_refused(c, started)
    assert_serves(limited_server)
