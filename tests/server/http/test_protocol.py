"""The HTTP/1.1 connection (http/protocol.py, http/message.py, http/server.py) against a fake transport and recording delegates.

Bytes are fed the way asyncio feeds a ``BufferedProtocol`` (``get_buffer`` then
``buffer_updated``, so a large body takes the direct path into its own buffer), and what the
connection writes, closes and pauses is recorded. No sockets (but the last test), no server
process, no OpenVINO. The wire-level tests against a real server are in test_http11.py; these pin
the cases a real client cannot easily produce: the delegate's awaitables, the order of its calls,
early answers, write backpressure, the pipeline limit, the idle sweep.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPInputError,
    HTTPMessageDelegate,
    HTTPOutputError,
    HTTPServerConnectionDelegate,
    RequestStartLine,
    ResponseStartLine,
)
from tornado.iostream import StreamClosedError

from ovserve.server.http import protocol
from ovserve.server.http.message import Message
from ovserve.server.http.protocol import DIRECT_MIN, PIPELINE_LIMIT, Connection
from ovserve.server.http.server import HTTPServer

pytestmark = pytest.mark.timeout(30)

CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"


# ----------------------------------------------------------------- fakes


class FakeTransport(asyncio.Transport):
    """What ``Connection`` uses of an ``asyncio.Transport``, recorded. Closing calls the
    protocol's ``connection_lost(None)`` with ``call_soon``, as asyncio's transports do."""

    def __init__(self, protocol: Connection, ssl: bool = False) -> None:
        super().__init__()
        self.protocol = protocol
        self.ssl = ssl
        self.written = bytearray()
        self.closing = False
        self.aborted = False
        self.paused = False
        self.pauses = 0
        self.resumes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.written += data

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        assert self.paused
        self.paused = False
        self.resumes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return ("10.1.2.3", 40000)
        if name == "sslcontext":
            return object() if self.ssl else None
        return default


class Request(HTTPMessageDelegate):
    """One request as the delegate saw it: its calls in order, its head and body."""

    def __init__(self, app: App, conn: Message) -> None:
        self.app = app
        self.conn = conn
        self.start_line = RequestStartLine("", "", "")
        self.headers = HTTPHeaders()
        self.calls: list[str] = []
        self.chunks: list[bytes | bytearray] = []

    @property
    def path(self) -> str:
        return self.start_line.path

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def headers_received(self, start_line: RequestStartLine | ResponseStartLine,
                         headers: HTTPHeaders) -> Awaitable[None] | None:
        assert isinstance(start_line, RequestStartLine)
        self.start_line, self.headers = start_line, headers
        self.calls.append("headers")
        self.app.events.append(("headers", start_line.path))
        return self.app.on_headers(self) if self.app.on_headers else None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.calls.append("data")
        self.chunks.append(chunk)
        self.app.events.append(("data", self.path))
        return self.app.on_data(self, chunk) if self.app.on_data else None

    def finish(self) -> None:
        self.calls.append("finish")
        self.app.events.append(("finish", self.path))
        if self.app.on_finish is not None:
            self.app.on_finish(self)
        elif self.app.respond_on_finish(self):
            self.respond()

    def on_connection_close(self) -> None:
        self.calls.append("close")
        self.app.events.append(("close", self.path))

    def respond(self, body: bytes | None = None, code: int = 200, reason: str = "OK",
                headers: dict[str, str] | None = None, length: bool = True) -> None:
        """Answer and finish: ``body`` (the request's path by default) with a
        ``Content-Length`` (unless ``length`` is False) and ``headers``."""
        body = self.path.encode() if body is None else body
        response = HTTPHeaders()
        if length:
            response["Content-Length"] = str(len(body))
        for name, value in (headers or {}).items():
            response[name] = value
        self.conn.write_headers(ResponseStartLine("HTTP/1.1", code, reason), response, body)
        self.conn.finish()


class App(HTTPServerConnectionDelegate):
    """The server delegate: a :class:`Request` per request, hooks to make them wait or answer."""

    def __init__(self, respond: bool | Callable[[Request], bool] = False) -> None:
        self.requests: list[Request] = []
        self.events: list[tuple[str, str]] = []
        self.closed: list[object] = []
        self.respond_on_finish: Callable[[Request], bool] = (
            respond if callable(respond) else (lambda _: respond))
        self.on_headers: Callable[[Request], Awaitable[None] | None] | None = None
        self.on_data: Callable[[Request, bytes], Awaitable[None] | None] | None = None
        self.on_finish: Callable[[Request], None] | None = None

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> Request:
        assert isinstance(request_conn, Message)
        request = Request(self, request_conn)
        self.requests.append(request)
        return request

    def on_close(self, server_conn: object) -> None:
        self.closed.append(server_conn)

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.requests]


def connect(app: App | HTTPServer, ssl: bool = False, **settings: Any
            ) -> tuple[Connection, FakeTransport]:
    """A connection of a new server for ``app`` (or of the server given), made."""
    if isinstance(app, HTTPServer):
        server = app
    else:
        settings.setdefault("max_body_size", 1 << 30)
        server = HTTPServer(app, **settings)
    conn = Connection(server)
    transport = FakeTransport(conn, ssl=ssl)
    conn.connection_made(transport)
    return conn, transport


def feed(conn: Connection, data: bytes) -> bytes:
    """Feed ``data`` as asyncio does, read by read, until it is all read or reading stops (paused
    or closed); what was not read is returned."""
    transport = conn.transport
    assert isinstance(transport, FakeTransport)
    view = memoryview(data)
    while view and not transport.paused and not transport.closing:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(view))
        buf[:n] = view[:n]
        conn.buffer_updated(n)
        view = view[n:]
    return bytes(view)


async def settle() -> None:
    """Let the loop run the callbacks due (done callbacks, ``connection_lost``)."""
    for _ in range(3):
        await asyncio.sleep(0)


def get(path: str = "/", *lines: str, version: str = "1.1", method: str = "GET") -> bytes:
    head = [f"{method} {path} HTTP/{version}", "Host: example", *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def post(path: str, body: bytes, *lines: str) -> bytes:
    return get(path, f"Content-Length: {len(body)}", *lines, method="POST") + body


def ok(body: bytes, *lines: str) -> bytes:
    """A 200 as :meth:`Request.respond` writes it, with the connection's ``lines`` added."""
    extra = "".join(f"{line}\r\n" for line in lines)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def refusal(code: int, reason: str) -> bytes:
    """The connection's own answer (400, 413, 431)."""
    body = f"{code} {reason}\n".encode()
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


def pending() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


# ----------------------------------------------------------------- requests and responses


@pytest.mark.parametrize("ssl", [False, True])
async def test_simple_get(ssl: bool) -> None:
    app = App(respond=True)
    conn, transport = connect(app, ssl=ssl)
    feed(conn, get("/a?b=1", "X-Thing:  v  "))
    [request] = app.requests
    assert request.start_line == RequestStartLine("GET", "/a?b=1", "HTTP/1.1")
    assert list(request.headers.get_all()) == [("Host", "example"), ("X-Thing", "v")]
    assert request.calls == ["headers", "finish"]
    assert request.chunks == []
    assert request.conn.context.remote_ip == "10.1.2.3"
    assert request.conn.context.protocol == ("https" if ssl else "http")
    assert transport.written == ok(b"/a?b=1")
    assert not transport.closing and conn.idle_since is not None
    await settle()
    assert app.closed == []


async def test_repeated_header_lines_are_kept_and_joined() -> None:
    """As Tornado's ``HTTPHeaders.add``: every line kept in order, the value joined by commas;
    names are case-insensitive."""
    app = App(respond=True)
    conn, _ = connect(app)
    feed(conn, get("/", "Accept: a", "X-Other: o", "accept: b"))
    [request] = app.requests
    assert request.headers["Accept"] == "a,b"
    assert request.headers.get_list("accept") == ["a", "b"]
    assert list(request.headers.get_all()) == [
        ("Host", "example"), ("Accept", "a"), ("Accept", "b"), ("X-Other", "o")]


async def test_pipelined_requests_are_delivered_one_at_a_time() -> None:
    """The second request waits, parsed, until the first is answered; answers keep the order."""
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/1") + post("/2", b"body"))
    [first] = app.requests
    assert first.calls == ["headers", "finish"]
    assert transport.written == b"" and conn.idle_since is None
    first.respond()
    [_, second] = app.requests
    assert second.path == "/2" and second.calls == ["headers", "data", "finish"]
    assert second.body == b"body"
    assert transport.written == ok(b"/1")
    second.respond()
    assert transport.written == ok(b"/1") + ok(b"/2")
    assert not transport.closing and conn.idle_since is not None


async def test_a_pending_future_from_headers_received_holds_the_body() -> None:
    app = App(respond=True)
    gate = pending()
    app.on_headers = lambda _: gate
    conn, transport = connect(app)
    feed(conn, post("/p", b"abcd") + get("/next"))
    [request] = app.requests
    assert request.calls == ["headers"]
    gate.set_result(None)
    await settle()
    assert request.calls == ["headers", "data", "finish"] and request.body == b"abcd"
    assert app.paths == ["/p", "/next"]
    assert transport.written == ok(b"/p") + ok(b"/next")


async def test_a_pending_future_from_data_received_holds_the_next_piece() -> None:
    app = App(respond=True)
    gates: list[asyncio.Future[None]] = []

    def on_data(_: Request, chunk: bytes) -> asyncio.Future[None]:
        gates.append(pending())
        return gates[-1]

    app.on_data = on_data
    conn, _ = connect(app)
    feed(conn, get("/c", "Transfer-Encoding: chunked", method="POST")
         + b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")
    [request] = app.requests
    assert request.calls == ["headers", "data"] and request.chunks == [b"ab"]
    gates[0].set_result(None)
    await settle()
    assert request.calls == ["headers", "data", "data"] and request.chunks == [b"ab", b"cde"]
    gates[1].set_result(None)
    await settle()
    assert request.calls == ["headers", "data", "data", "finish"]


@pytest.mark.parametrize("pieces", [1, 3])
async def test_large_body_is_one_bytearray_and_the_next_request_is_intact(pieces: int) -> None:
    """A body over DIRECT_MIN with a Content-Length is read into one buffer (in three reads, or
    parsed with its head in one), handed over as one ``bytearray``; a request right behind its
    tail in the same read is parsed by a fresh parser."""
    size = 3 * DIRECT_MIN + 7
    body = bytes(range(256)) * (size // 256) + b"\x01" * (size % 256)
    app = App(respond=True)
    conn, transport = connect(app)
    data = post("/big", body) + get("/next", "X-After: 1")
    if pieces == 1:
        feed(conn, data)
    else:
        head = len(data) - len(body) - len(get("/next", "X-After: 1"))
        feed(conn, data[: head + 1000])
        assert len(conn.get_buffer(-1)) == size - 1000  # the rest of the body, read straight in
        feed(conn, data[head + 1000: head + 150_000])
        feed(conn, data[head + 150_000:])
    first, second = app.requests
    assert first.calls == ["headers", "data", "finish"]
    [chunk] = first.chunks
    assert isinstance(chunk, bytearray) and chunk == body
    assert second.start_line == RequestStartLine("GET", "/next", "HTTP/1.1")
    assert list(second.headers.get_all()) == [("Host", "example"), ("X-After", "1")]
    assert transport.written == ok(b"/big") + ok(b"/next")


async def test_chunked_body_in_small_reads_with_trailers() -> None:
    app = App(respond=True)
    conn, transport = connect(app)
    data = (get("/c", "Transfer-Encoding: chunked", method="POST")
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n" + get("/next"))
    for start in range(0, len(data), 7):
        feed(conn, data[start: start + 7])
    first, second = app.requests
    assert first.body == b"hello world" and first.calls[-1] == "finish"
    assert second.path == "/next"
    assert transport.written == ok(b"/c") + ok(b"/next")


# ----------------------------------------------------------------- Expect: 100-continue


async def test_expect_100_continue_comes_after_the_headers_before_the_body() -> None:
    app = App()
    seen: list[bytes] = []
    conn, transport = connect(app)
    app.on_headers = lambda _: seen.append(bytes(transport.written))
    feed(conn, get("/e", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    [request] = app.requests
    assert seen == [b""]  # nothing was written before the delegate took the headers
    assert transport.written == CONTINUE and request.calls == ["headers"]
    feed(conn, b"hello")
    assert request.calls == ["headers", "data", "finish"] and request.body == b"hello"
    request.respond()
    assert transport.written == CONTINUE + ok(b"/e")


async def test_no_100_continue_after_an_early_answer() -> None:
    app = App()
    app.on_headers = lambda r: r.respond(b"no", 413, "Payload Too Large", {"Connection": "close"})
    conn, transport = connect(app)
    feed(conn, get("/e", "Content-Length: 5", "Expect: 100-continue", method="POST"))
    assert transport.written == (b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 2\r\n"
                                 b"Connection: close\r\n\r\nno")
    assert transport.closing


# ----------------------------------------------------------------- the body limit


@pytest.mark.parametrize("length", [101, 2 * DIRECT_MIN])
async def test_declared_body_over_the_limit_is_refused(length: int) -> None:
    app = App(respond=True)
    conn, transport = connect(app, max_body_size=100)
    feed(conn, get("/big", f"Content-Length: {length}", method="POST") + b"x" * 50)
    assert transport.written == refusal(413, "Payload Too Large")
    assert transport.closing
    await settle()
    [request] = app.requests
    assert request.calls == ["headers", "close"]  # told once, never given the body
    assert app.closed == [conn]


@pytest.mark.parametrize("length", [500, 2 * DIRECT_MIN])
async def test_the_delegate_may_lift_the_limit(length: int) -> None:
    app = App(respond=True)
    app.on_headers = lambda r: r.conn.set_max_body_size(1 << 20)
    conn, transport = connect(app, max_body_size=100)
    body = b"y" * length
    feed(conn, post("/big", body))
    [request] = app.requests
    assert request.body == body and request.calls[-1] == "finish"
    assert transport.written == ok(b"/big") and not transport.closing


async def test_chunked_body_crossing_the_limit_is_refused() -> None:
    app = App(respond=True)
    conn, transport = connect(app, max_body_size=100)
    feed(conn, get("/c", "Transfer-Encoding: chunked", method="POST") + b"3c\r\n" + b"a" * 60 + b"\r\n")
    [request] = app.requests
    assert request.calls == ["headers", "data"] and transport.written == b""
    feed(conn, b"3c\r\n" + b"b" * 60 + b"\r\n")
    assert transport.written == refusal(413, "Payload Too Large") and transport.closing
    await settle()
    assert request.calls == ["headers", "data", "close"]


# ----------------------------------------------------------------- malformed requests


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n",
], ids=["request-line", "content-length", "header-name"])
async def test_malformed_request_gets_400_and_a_close(data: bytes) -> None:
    app = App(respond=True)
    conn, transport = connect(app)
    feed(conn, data)
    assert transport.written == refusal(400, "Bad Request")
    assert transport.closing and app.requests == []


async def test_malformed_chunk_of_a_delivered_request() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/c", "Transfer-Encoding: chunked", method="POST") + b"2\r\nab\r\n")
    assert transport.written == b""
    feed(conn, b"zz\r\n")
    assert transport.written == refusal(400, "Bad Request") and transport.closing
    await settle()
    [request] = app.requests
    assert request.calls == ["headers", "data", "close"]


async def test_malformed_request_behind_a_good_one_is_answered_in_its_turn() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/good") + b"BROKEN\r\n\r\n" + get("/never"))
    assert transport.written == b"" and transport.paused  # nothing more is read
    [good] = app.requests
    good.respond()
    assert transport.written == ok(b"/good") + refusal(400, "Bad Request")
    assert transport.closing and app.paths == ["/good"]


@pytest.mark.parametrize("data", [
    get("/", "X-Big: " + "a" * 2000),
    get("/", *(f"X-{i}: {'b' * 60}" for i in range(40))),
    get("/" + "u" * 2000),
], ids=["one-header", "many-headers", "url"])
async def test_request_head_over_the_limit_gets_431(data: bytes) -> None:
    app = App(respond=True)
    conn, transport = connect(app, max_header_size=1024)
    feed(conn, data)
    assert transport.written == refusal(431, "Request Header Fields Too Large")
    assert transport.closing and app.requests == []


async def test_an_unterminated_header_line_is_bounded() -> None:
    """A header line that never ends is not buffered without bound: httptools keeps it unseen
    until it ends, so the connection counts the reads of an unfinished head, from the read after
    the one it began in (MAX_HEADER_SIZE's docstring)."""
    app = App()
    conn, transport = connect(app, max_header_size=1024)
    feed(conn, b"GET / HTTP/1.1\r\nX-Endless: " + b"a" * 500)
    assert transport.written == b"" and not transport.closing  # within the limit so far
    feed(conn, b"a" * 600)  # the same line: the second read counts
    assert transport.written == b"" and not transport.closing  # 600 <= 1024
    feed(conn, b"a" * 600)
    assert transport.written == refusal(431, "Request Header Fields Too Large")
    assert transport.closing


async def test_http_input_error_from_headers_received_is_a_quiet_400(
    caplog: pytest.LogCaptureFixture
) -> None:
    """What ``HTTPServerRequest`` raises for a request without ``Host``: 400 and a close, logged
    below ERROR; the delegate is told that the connection closed, as Tornado tells it."""
    app = App(respond=True)

    def refuse(_: Request) -> None:
        raise HTTPInputError("Missing Host header")

    app.on_headers = refuse
    conn, transport = connect(app)
    with caplog.at_level(logging.DEBUG):
        feed(conn, post("/p", b"abc") + get("/next"))
        await settle()
    assert transport.written == refusal(400, "Bad Request") and transport.closing
    [request] = app.requests
    assert request.calls == ["headers", "close"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Missing Host header" in caplog.text


async def test_http_input_error_from_an_awaited_headers_received_is_a_400() -> None:
    """Tornado awaited ``headers_received``'s awaitable and answered its ``HTTPInputError`` with
    400 and a close, as it did when raised directly."""
    app = App(respond=True)
    gate = pending()
    app.on_headers = lambda _: gate
    conn, transport = connect(app)
    feed(conn, post("/p", b"abc"))
    gate.set_exception(HTTPInputError("Missing Host header"))
    await settle()
    assert gate.exception() is not None  # retrieved: no "never retrieved" noise either way
    assert app.requests[0].calls == ["headers", "close"]
    assert transport.written == refusal(400, "Bad Request") and transport.closing


# ----------------------------------------------------------------- closing after a response


async def test_an_answer_before_the_whole_body_closes_the_connection() -> None:
    app = App()
    app.on_headers = lambda r: r.respond(b"no", 403, "Forbidden")
    conn, transport = connect(app)
    feed(conn, get("/p", "Content-Length: 10", method="POST") + b"abc")
    assert transport.written == b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"
    assert transport.closing
    assert feed(conn, b"defghij") == b"defghij"  # no more is read
    await settle()
    [request] = app.requests
    assert "finish" not in request.calls and request.chunks == []


async def test_connection_close_from_the_delegate_closes_after_the_response() -> None:
    app = App()
    app.on_finish = lambda r: r.respond(headers={"Connection": "close"})
    conn, transport = connect(app)
    feed(conn, get("/1") + get("/2"))
    assert transport.written == ok(b"/1", "Connection: close")
    assert transport.closing and app.paths == ["/1"]


@pytest.mark.parametrize(("version", "lines", "answer", "closed"), [
    ("1.0", (), (), True),
    ("1.0", ("Connection: keep-alive",), ("Connection: Keep-Alive",), False),
    ("1.1", ("Connection: close",), ("Connection: close",), True),
    ("1.1", ("Connection: keep-alive",), (), False),
])
async def test_keep_alive_rules(version: str, lines: tuple[str, ...], answer: tuple[str, ...],
                                closed: bool) -> None:
    app = App(respond=True)
    conn, transport = connect(app)
    feed(conn, get("/k", *lines, version=version))
    assert transport.written == ok(b"/k", *answer)
    assert transport.closing is closed


async def test_http10_keep_alive_response_without_length_closes() -> None:
    """An HTTP/1.0 body without Content-Length can only be ended by closing."""
    app = App()
    app.on_finish = lambda r: r.respond(length=False)
    conn, transport = connect(app)
    feed(conn, get("/k", "Connection: keep-alive", version="1.0") + get("/2", version="1.0"))
    assert transport.written.endswith(b"\r\n\r\n/k") and transport.closing
    assert app.paths == ["/k"]


# ----------------------------------------------------------------- response framing


async def test_response_without_length_is_chunked() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/c"))
    [request] = app.requests
    request.conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"),
                               HTTPHeaders({"X-A": "1"}), b"abc")
    request.conn.write(b"0123456789abcdefg")
    request.conn.write(b"")
    request.conn.finish()
    assert transport.written == (b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"3\r\nabc\r\n11\r\n0123456789abcdefg\r\n0\r\n\r\n")
    assert not transport.closing


async def test_head_response_has_no_body_and_keeps_the_connection() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/h", method="HEAD") + get("/next"))
    first = app.requests[0]
    first.conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"),
                             HTTPHeaders({"Content-Length": "5"}))
    first.conn.finish()
    app.requests[1].respond()
    assert transport.written == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + ok(b"/next")
    assert not transport.closing


@pytest.mark.parametrize("code", [204, 304])
async def test_no_body_status_is_not_chunked(code: int) -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/n"))
    request = app.requests[0]
    request.conn.write_headers(ResponseStartLine("HTTP/1.1", code, "X"), HTTPHeaders())
    request.conn.finish()
    assert transport.written == f"HTTP/1.1 {code} X\r\n\r\n".encode()


async def test_204_without_length_keeps_the_connection() -> None:
    """A 204 has no body (RFC 9112 6.3): it ends with its head, like Tornado kept it alive."""
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/n", method="OPTIONS"))
    request = app.requests[0]
    request.conn.write_headers(ResponseStartLine("HTTP/1.1", 204, "No Content"), HTTPHeaders())
    request.conn.finish()
    assert transport.written == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert not transport.closing


@pytest.mark.parametrize("when", ["write_headers", "write"])
async def test_writing_more_than_content_length_fails(when: str) -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/o"))
    request = app.requests[0]
    with pytest.raises(HTTPOutputError, match="more data than Content-Length"):
        request.conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"),
                                   HTTPHeaders({"Content-Length": "3"}),
                                   b"abcd" if when == "write_headers" else b"ab")
        request.conn.write(b"cd")
    assert transport.aborted
    await settle()
    assert request.calls == ["headers", "finish"] and app.closed == [conn]


async def test_finishing_short_of_content_length_fails() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/o"))
    request = app.requests[0]
    request.conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"),
                               HTTPHeaders({"Content-Length": "3"}), b"ab")
    with pytest.raises(HTTPOutputError, match="1 bytes less than Content-Length"):
        request.conn.finish()
    assert transport.aborted


async def test_a_bare_lf_in_a_response_header_is_refused() -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/x"))
    with pytest.raises(ValueError, match="Illegal characters"):
        app.requests[0].conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"),
                                           HTTPHeaders({"X-A": "a\nInjected: 1"}))
    assert transport.written == b""


@pytest.mark.parametrize("where", ["value", "reason"])
async def test_a_crlf_in_a_response_header_is_refused(where: str) -> None:
    """Response splitting: Tornado's HTTP1Connection checked each line on its own."""
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/x"))
    evil = "a\r\nSet-Cookie: x=1"
    headers = HTTPHeaders({"X-A": evil} if where == "value" else {})
    with pytest.raises(ValueError, match="Illegal characters"):
        app.requests[0].conn.write_headers(
            ResponseStartLine("HTTP/1.1", 200, evil if where == "reason" else "OK"), headers)
    assert transport.written == b""


# ----------------------------------------------------------------- backpressure


async def test_write_futures_wait_for_resume_writing(caplog: pytest.LogCaptureFixture) -> None:
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/w"))
    request = app.requests[0]
    conn.pause_writing()
    head = request.conn.write_headers(ResponseStartLine("HTTP/1.1", 200, "OK"), HTTPHeaders())
    piece = request.conn.write(b"abc")
    await settle()
    assert not head.done() and not piece.done()
    assert transport.written.endswith(b"3\r\nabc\r\n")  # written; the transport holds it
    conn.resume_writing()
    assert head.done() and piece.done()
    await head
    await piece

    conn.pause_writing()
    waited = request.conn.write(b"def")
    unwatched = request.conn.write(b"ghi")
    conn.connection_lost(None)
    with pytest.raises(StreamClosedError):
        await waited
    assert unwatched.done()
    after = request.conn.write(b"jkl")  # once closed: failed at once, nothing written
    with pytest.raises(StreamClosedError):
        await after
    assert not transport.written.endswith(b"jkl\r\n")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del unwatched
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_paused_writing_holds_the_next_pipelined_request() -> None:
    """Tornado read the next request only once the last response was flushed
    (``_finish_future``): the client's reading bounds what the server holds."""
    app = App(respond=True)
    conn, _ = connect(app)
    conn.pause_writing()
    feed(conn, get("/1") + get("/2"))
    assert app.paths == ["/1"]
    conn.resume_writing()
    await settle()
    assert app.paths == ["/1", "/2"]


async def test_pipelined_bodies_over_the_limit_pause_reading() -> None:
    """Requests with bodies (under DIRECT_MIN each) pipelined behind an unanswered one: reading
    pauses past PIPELINE_LIMIT and resumes as they are delivered."""
    app = App(respond=lambda r: r.path != "/first")
    conn, transport = connect(app)
    size = DIRECT_MIN - 1000
    count = PIPELINE_LIMIT // size + 8
    data = get("/first") + b"".join(post(f"/{i}", bytes([i]) * size) for i in range(count))
    rest = feed(conn, data)
    assert transport.paused and transport.pauses == 1 and rest
    assert app.paths == ["/first"]
    app.requests[0].respond()
    assert not transport.paused and transport.resumes == 1
    assert feed(conn, rest) == b""
    assert app.paths == ["/first", *(f"/{i}" for i in range(count))]
    assert all(r.body == bytes([i]) * size for i, r in enumerate(app.requests[1:]))
    assert transport.written == ok(b"/first") + b"".join(ok(f"/{i}".encode()) for i in range(count))


async def test_pipelined_large_bodies_over_the_limit_pause_reading() -> None:
    app = App(respond=lambda r: r.path != "/first")
    conn, transport = connect(app)
    size = 2 * DIRECT_MIN
    data = get("/first") + b"".join(post(f"/{i}", b"z" * size)
                                    for i in range(PIPELINE_LIMIT // size + 3))
    feed(conn, data)
    assert transport.pauses == 1


async def test_pipelined_heads_over_the_limit_pause_reading() -> None:
    """PIPELINE_LIMIT is on 'bytes of parsed, not yet delivered requests', heads included."""
    app = App(respond=lambda r: r.path != "/first")
    conn, transport = connect(app)
    one = get("/", "X-Pad: " + "p" * 8000)
    feed(conn, get("/first") + one * (PIPELINE_LIMIT // len(one) + 3))
    assert transport.pauses == 1


# ----------------------------------------------------------------- the connection ends


@pytest.mark.parametrize("whole", [False, True])
async def test_client_leaving_mid_request_tells_the_delegate_once(whole: bool) -> None:
    """The delegate hears ``on_connection_close`` only while it has not had ``finish()``; the
    close callback is called until the response is finished."""
    app = App()
    called: list[str] = []
    app.on_headers = lambda r: r.conn.set_close_callback(lambda: called.append(r.path))
    conn, transport = connect(app)
    server = conn.server
    if whole:
        feed(conn, post("/p", b"abcd") + get("/queued"))
    else:
        feed(conn, post("/p", b"abcd")[:-2])
    assert conn in server.connections
    conn.connection_lost(None)
    [request] = app.requests  # a queued request never reached the delegate
    assert request.calls == (["headers", "data", "finish"] if whole
                             else ["headers", "data", "close"])
    assert called == ["/p"]
    assert app.closed == [conn]
    assert conn not in server.connections
    request.respond()  # an answer after the end is dropped quietly
    assert transport.written == b""


async def test_close_callback_is_dropped_once_the_response_is_finished() -> None:
    app = App(respond=True)
    called: list[str] = []
    app.on_headers = lambda r: r.conn.set_close_callback(lambda: called.append(r.path))
    conn, _ = connect(app)
    feed(conn, get("/1"))
    conn.connection_lost(None)
    assert called == [] and app.requests[0].calls == ["headers", "finish"]
    assert app.closed == [conn]


# ----------------------------------------------------------------- Upgrade


async def test_upgrade_without_a_body_is_plain_http() -> None:
    app = App(respond=True)
    conn, transport = connect(app)
    feed(conn, get("/up", "Connection: Upgrade", "Upgrade: h2c") + get("/next"))
    assert app.paths == ["/up", "/next"]
    assert app.requests[0].headers["Upgrade"] == "h2c"
    assert transport.written == ok(b"/up") + ok(b"/next") and not transport.closing


async def test_upgrade_with_a_body_is_refused() -> None:
    app = App(respond=True)
    conn, transport = connect(app)
    feed(conn, get("/first") + post("/up", b"hello", "Connection: Upgrade", "Upgrade: h2c")
         + get("/next"))
    assert transport.written == ok(b"/first") + refusal(400, "Bad Request")
    assert transport.closing and app.paths == ["/first"]


# ----------------------------------------------------------------- idle sweep and the server


async def test_idle_sweep_closes_only_idle_connections() -> None:
    app = App()
    server = HTTPServer(app, max_body_size=100, idle_timeout=10.0)
    idle, idle_transport = connect(server)
    recent, recent_transport = connect(server)
    busy, busy_transport = connect(server)
    feed(busy, get("/busy"))
    feed(recent, b"GET / HT")  # a head still arriving is idle time
    now = asyncio.get_running_loop().time()
    assert busy.idle_since is None and idle.idle_since is not None
    idle.idle_since = now - 11.0
    recent.idle_since = now - 9.0
    server._sweep()
    sweeper = server._sweeper
    assert sweeper is not None and not sweeper.cancelled()
    assert idle_transport.closing
    assert not recent_transport.closing and not busy_transport.closing
    app.requests[0].respond()
    assert busy.idle_since is not None and busy.idle_since >= now
    await settle()
    assert server.connections == {recent, busy}
    server.stop()
    assert sweeper.cancelled() and server._sweeper is None


@pytest.mark.parametrize("part", ["head", "body", "read-into body"])
async def test_sweep_closes_a_connection_whose_request_stalled(part: str) -> None:
    """A request partly received (its head, a body in pieces, a body read into its buffer)
    that sends nothing for ``body_timeout`` closes its connection; one that sent recently, and
    one whose request is whole and being answered, stay."""
    app = App()
    server = HTTPServer(app, max_body_size=1 << 30, idle_timeout=1000.0, body_timeout=10.0)
    stalled, stalled_transport = connect(server)
    moving, moving_transport = connect(server)
    answering, answering_transport = connect(server)
    data = {"head": b"GET / HTTP/1.1\r\nHo",
            "body": post("/p", b"x" * 100)[:-50],
            "read-into body": post("/p", b"x" * (DIRECT_MIN + 10))[:-5]}[part]
    feed(stalled, data)
    feed(moving, data)
    feed(answering, get("/busy"))
    assert stalled.receiving and moving.receiving and not answering.receiving
    now = asyncio.get_running_loop().time()
    stalled.last_read = now - 11.0
    moving.last_read = now - 9.0
    answering.last_read = now - 11.0
    server._sweep()
    assert stalled_transport.closing
    assert not moving_transport.closing and not answering_transport.closing
    server.stop()


async def test_listen_stop_and_close_all_connections() -> None:
    app = App(respond=True)
    server = HTTPServer(app, max_body_size=100)
    [sock] = await server.listen(0, "127.0.0.1")
    port = sock.getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(get("/live"))
        answer = await asyncio.wait_for(reader.readexactly(len(ok(b"/live"))), 5)
        assert answer == ok(b"/live")
        [conn] = server.connections
        server.stop()
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await server.close_all_connections(timeout=10)
        assert loop.time() - start < 5  # closed gracefully, not aborted at the deadline
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert server.connections == set() and app.closed == [conn]
    finally:
        writer.close()
        await writer.wait_closed()


# ----------------------------------------------------------------- half-close


async def test_a_half_closed_client_gets_its_answers_then_the_connection_closes() -> None:
    """A client that shuts its side after sending (``shutdown(SHUT_WR)``) still gets the
    answers to what it sent; the connection closes after the last one."""
    app = App()
    conn, transport = connect(app)
    feed(conn, get("/1") + get("/2"))
    assert conn.eof_received() is True  # keep the transport open for the answers
    app.requests[0].respond()
    assert not transport.closing
    app.requests[1].respond()
    assert transport.written == ok(b"/1") + ok(b"/2")
    assert transport.closing


@pytest.mark.parametrize("data", [b"", b"GET / HTTP/1.1\r\nHo", None], ids=["idle", "head", "body"])
async def test_a_half_close_with_nothing_whole_to_answer_closes(data: bytes | None) -> None:
    """Nothing sent, or a request cut short (its head, its body): nothing will be answered,
    so the transport closes (asyncio closes it when eof_received returns False)."""
    app = App()
    conn, _ = connect(app)
    feed(conn, post("/p", b"abcdef")[:-3] if data is None else data)
    assert conn.eof_received() is False


async def test_a_half_close_over_tls_closes() -> None:
    """asyncio's TLS transports cannot stay open after the peer's EOF."""
    app = App()
    conn, _ = connect(app, ssl=True)
    feed(conn, get("/1"))
    assert conn.eof_received() is False


# ----------------------------------------------------------------- random splits


def _feed_in_pieces(conn: Connection, data: bytes | memoryview, sizes: random.Random
                    ) -> memoryview:
    """Feed ``data`` in reads of random sizes (1 byte to 200 KiB), each no larger than what
    ``get_buffer`` offers, as a slow or fast network would deliver it, until reading pauses;
    what was not fed is returned."""
    transport = conn.transport
    assert isinstance(transport, FakeTransport)
    view = memoryview(data)
    while view and not transport.paused:
        buf = conn.get_buffer(-1)
        n = min(len(buf), len(view), sizes.choice([1, 7, 100, 1500, 65536, 200_000]))
        buf[:n] = view[:n]
        conn.buffer_updated(n)
        view = view[n:]
    return view


def _chunked(path: str, body: bytes, pieces: random.Random) -> bytes:
    head = get(path, "Transfer-Encoding: chunked", method="POST")
    out, i = [head], 0
    while i < len(body):
        n = min(pieces.randint(1, max(1, len(body) // 3)), len(body) - i)
        out.append(b"%x\r\n%s\r\n" % (n, body[i:i + n]))
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


@pytest.mark.parametrize("later", [False, True], ids=["answered-at-once", "answered-later"])
@pytest.mark.parametrize("seed", range(12))
async def test_requests_split_at_random_are_delivered_whole_and_in_order(
    seed: int, later: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipelined stream of GETs, small and large (over DIRECT_MIN, read into one buffer)
    Content-Length bodies and chunked bodies, delivered in reads of random sizes: every request
    reaches its delegate with its own path and body, and the answers come in order. Answered
    later (from the loop), the requests behind wait parsed, and reading pauses and resumes."""
    rng = random.Random(seed)
    expected: list[tuple[str, bytes]] = []
    stream = []
    kinds = [rng.choice(["get", "small", "large", "chunked"]) for _ in range(rng.randint(5, 12))]
    if later:  # three large bodies waiting behind the first request pass a 128 KiB limit
        kinds += ["large"] * 3
        monkeypatch.setattr(protocol, "PIPELINE_LIMIT", 128 * 1024)
    for i, kind in enumerate(kinds):
        path = f"/{i}/{kind}"
        if kind == "get":
            body = b""
            stream.append(get(path))
        else:
            size = rng.randint(DIRECT_MIN + 1, 3 * DIRECT_MIN) if kind == "large" else rng.randint(0, 3000)
            body = bytes(rng.getrandbits(8) for _ in range(64)) * (size // 64) + b"x" * (size % 64)
            stream.append(_chunked(path, body, rng) if kind == "chunked" else post(path, body))
        expected.append((path, body))
    app = App(respond=not later)
    if later:
        app.on_finish = lambda request: asyncio.get_running_loop().call_soon(request.respond)
    conn, transport = connect(app)
    data = _feed_in_pieces(conn, b"".join(stream), rng)
    while data:  # as the transport would: no reads while paused
        assert later, "reading paused with nothing waiting for an answer"
        await asyncio.sleep(0)
        data = _feed_in_pieces(conn, data, rng)
    for _ in range(len(expected) + 3):
        await asyncio.sleep(0)
    assert [(r.path, r.body) for r in app.requests] == expected
    assert all(r.calls[0] == "headers" and r.calls[-1] == "finish" for r in app.requests)
    assert transport.written == b"".join(ok(path.encode()) for path, _ in expected)
    assert not transport.closing and conn.idle_since is not None
    assert transport.pauses == transport.resumes and not transport.paused
    if later:
        assert transport.pauses > 0  # the requests waiting passed the (lowered) limit
