"""The direct router's exchange (http/direct.py) against a recording connection: what it writes,
when it counts a request in flight, what it hands to the Tornado application.

The HTTP tests of every dialect drive the same code over real sockets; these pin down the cases a
real client cannot easily produce (a bug in an endpoint, a connection lost mid-inference)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from tornado.httputil import HTTPHeaders, RequestStartLine, ResponseStartLine

from ovserve.server.http.base import Cors, Deps, Endpoint, Reply
from ovserve.server.http.direct import Router


class _Context:
    remote_ip = "127.0.0.9"


class RecordingConnection:
    """What the exchange uses of its HTTP connection (http/protocol.py), recorded."""

    def __init__(self) -> None:
        self.context = _Context()
        self.max_body_size: int | None = None
        self.responses: list[tuple[ResponseStartLine, dict[str, str], bytes]] = []
        self.finished = 0

    def set_max_body_size(self, size: int) -> None:
        self.max_body_size = size

    def reply(self, code: int, reason: str, head: bytes, body: bytes, close: bool = False) -> None:
        assert head.endswith(b"\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin1").splitlines())
        if close:
            headers["Connection"] = "close"
        headers["Content-Length"] = str(len(body))
        self.responses.append((ResponseStartLine("HTTP/1.1", code, reason), headers, body))
        self.finished += 1


class RecordingApplication:
    """Stands in for the Tornado application: records the requests handed to it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start_request(self, server_conn: object, request_conn: object) -> RecordingApplication:
        self.calls.append(("start_request", request_conn))
        return self

    def headers_received(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        self.calls.append(("headers_received", start_line.path))

    def data_received(self, chunk: bytes) -> None:
        self.calls.append(("data_received", chunk))

    def finish(self) -> None:
        self.calls.append(("finish", None))

    def on_connection_close(self) -> None:
        self.calls.append(("on_connection_close", None))


def _error(message: str) -> bytes:
    return f'{{"error": "{message}"}}'.encode()


class Echo:
    """An endpoint that answers with what it was given (or fails, or waits, when told to)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str | None], bytes]] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.reply_headers: tuple[tuple[str, str], ...] = ()

    async def __call__(self, deps: Deps, args: Sequence[str | None], headers: HTTPHeaders,
                       body: bytes) -> Reply:
        self.calls.append((list(args), body))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return Reply(200, b"echo:" + body, self.reply_headers)


@pytest.fixture
def echo() -> Echo:
    return Echo()


def make_router(echo: Echo, **deps: Any) -> tuple[Router, RecordingApplication, Deps]:
    application = RecordingApplication()
    settings = Deps(manager=None, **deps)  # type: ignore[arg-type]  # endpoints get it untouched
    router = Router(application, settings, [Endpoint(r"/run/([^/]+)", echo, _error)])  # type: ignore[arg-type]
    return router, application, settings


def post(path: str, **headers: str) -> tuple[RequestStartLine, HTTPHeaders]:
    return RequestStartLine("POST", path, "HTTP/1.1"), HTTPHeaders(headers)


async def exchange(router: Router, path: str, chunks: Sequence[bytes], **headers: str
                   ) -> RecordingConnection:
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(*post(path, **headers))
    for chunk in chunks:
        delegate.data_received(chunk)
    delegate.finish()
    for _ in range(5):
        await asyncio.sleep(0)
    return conn


async def test_serves_a_matching_post_with_the_usual_headers(echo: Echo) -> None:
    router, application, _ = make_router(echo)
    conn = await exchange(router, "/run/abc?x=1", [b"12", b"34"], **{"Content-Length": "4"})
    assert echo.calls == [(["abc"], b"1234")]
    [(start, headers, body)] = conn.responses
    assert (start.code, start.reason, body) == (200, "OK", b"echo:1234")
    assert list(headers) == ["Server", "Content-Type", "Date", "Access-Control-Allow-Origin",
                             "Content-Length"]
    assert headers["Server"].startswith("TornadoServer/")
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Length"] == "9"
    assert conn.finished == 1
    assert application.calls == []


async def test_reply_headers_override_and_cors_follows_the_flags(echo: Echo) -> None:
    echo.reply_headers = (("Content-Type", "application/octet-stream"), ("X-Extra", "1"))
    router, _, _ = make_router(echo, cors=Cors("https://a.example", allow_credentials=True))
    conn = await exchange(router, "/run/abc", [b"x"])
    headers = conn.responses[0][1]
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Extra"] == "1"
    assert headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    router, _, _ = make_router(echo, cors=None)
    conn = await exchange(router, "/run/abc", [b"x"])
    assert not any(name.startswith("Access-Control") for name in conn.responses[0][1])


@pytest.mark.parametrize(("method", "path"), [("GET", "/run/abc"), ("POST", "/other"),
                                              ("PUT", "/run/abc"), ("OPTIONS", "/run/abc")])
async def test_everything_else_goes_to_the_application(echo: Echo, method: str, path: str) -> None:
    router, application, settings = make_router(echo)
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(RequestStartLine(method, path, "HTTP/1.1"), HTTPHeaders())
    delegate.data_received(b"body")
    delegate.finish()
    delegate.on_connection_close()
    assert application.calls == [("start_request", conn), ("headers_received", path),
                                 ("data_received", b"body"), ("finish", None),
                                 ("on_connection_close", None)]
    assert echo.calls == [] and conn.responses == [] and settings.inflight.count == 0


async def test_a_bug_in_an_endpoint_is_a_500_with_the_dialects_body(
    echo: Echo, caplog: pytest.LogCaptureFixture
) -> None:
    echo.fail = RuntimeError("boom")
    router, _, settings = make_router(echo)
    with caplog.at_level(logging.ERROR):
        conn = await exchange(router, "/run/abc", [b"x"])
    [(start, _, body)] = conn.responses
    assert (start.code, start.reason, body) == (500, "Internal Server Error",
                                                b'{"error": "Internal server error"}')
    assert "Uncaught exception POST /run/abc" in caplog.text
    assert "RuntimeError: boom" in caplog.text  # the traceback is logged, not sent
    assert settings.inflight.count == 0


async def test_content_length_over_the_limit_is_refused_before_the_body(echo: Echo) -> None:
    router, _, settings = make_router(echo, max_body_bytes=10)
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(*post("/run/abc", **{"Content-Length": "11"}))
    [(start, headers, body)] = conn.responses
    assert start.code == 413
    assert body == b'{"error": "Request body is larger than the limit of 10 bytes"}'
    assert headers["Connection"] == "close"
    assert settings.inflight.count == 0
    delegate.data_received(b"x" * 11)  # Tornado stops delivering; nothing may happen if it did
    delegate.on_connection_close()
    assert len(conn.responses) == 1 and echo.calls == [] and settings.inflight.count == 0


async def test_chunked_body_is_refused_by_the_piece_that_crosses_the_limit(echo: Echo) -> None:
    router, _, settings = make_router(echo, max_body_bytes=10)
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(*post("/run/abc", **{"Transfer-Encoding": "chunked"}))
    assert conn.max_body_size is not None and conn.max_body_size > 10  # Tornado's limit lifted
    delegate.data_received(b"x" * 6)
    assert conn.responses == []
    delegate.data_received(b"x" * 5)
    assert [r[0].code for r in conn.responses] == [413]
    assert settings.inflight.count == 0 and echo.calls == []


async def test_path_that_is_not_utf8_is_a_400(echo: Echo) -> None:
    router, _, settings = make_router(echo)
    conn = RecordingConnection()
    router.start_request(object(), conn).headers_received(*post("/run/%ff"))
    [(start, headers, body)] = conn.responses
    assert (start.code, body) == (400, b'{"error": "Bad Request"}')
    assert headers["Connection"] == "close"
    assert echo.calls == [] and settings.inflight.count == 0


async def test_in_flight_until_the_inference_ends_even_when_the_client_left(echo: Echo) -> None:
    echo.gate = asyncio.Event()
    router, _, settings = make_router(echo)
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(*post("/run/abc"))
    assert settings.inflight.count == 1
    delegate.data_received(b"x")
    delegate.finish()
    await asyncio.sleep(0)
    delegate.on_connection_close()  # the client is gone; the inference still runs
    assert settings.inflight.count == 1
    echo.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert settings.inflight.count == 0
    assert conn.responses == []  # nothing is written to a closed connection


async def test_an_exchange_that_never_waits_is_answered_within_finish(echo: Echo) -> None:
    """No task and no trip through the event loop for an inference that runs inline."""
    router, _, settings = make_router(echo)
    conn = RecordingConnection()
    delegate = router.start_request(object(), conn)
    delegate.headers_received(*post("/run/abc"))
    delegate.data_received(b"x")
    delegate.finish()
    assert [r[0].code for r in conn.responses] == [200]  # before any await
    assert settings.inflight.count == 0


async def test_a_waiting_exchange_is_resumed_and_its_cancellation_passed_on(echo: Echo) -> None:
    echo.gate = asyncio.Event()
    router, _, settings = make_router(echo)
    conn = RecordingConnection()
    first = router.start_request(object(), conn)
    first.headers_received(*post("/run/one"))
    first.finish()
    second = router.start_request(object(), RecordingConnection())
    second.headers_received(*post("/run/two"))
    second.finish()
    assert settings.inflight.count == 2 and conn.responses == []
    task = second._task  # type: ignore[attr-defined]
    task.cancel()  # as asyncio.run does with what is left at shutdown
    with pytest.raises(asyncio.CancelledError):
        await task
    assert settings.inflight.count == 1
    echo.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert [r[0].code for r in conn.responses] == [200] and settings.inflight.count == 0


async def test_connection_lost_before_the_body_ended_counts_nothing(echo: Echo) -> None:
    router, _, settings = make_router(echo)
    delegate = router.start_request(object(), RecordingConnection())
    delegate.headers_received(*post("/run/abc", **{"Content-Length": "10"}))
    delegate.data_received(b"x" * 4)
    delegate.on_connection_close()
    assert settings.inflight.count == 0 and echo.calls == []


@pytest.mark.parametrize(("status", "level"), [(200, logging.INFO), (404, logging.WARNING),
                                               (500, logging.ERROR)])
async def test_access_log_line_as_tornado_writes_it(
    echo: Echo, caplog: pytest.LogCaptureFixture, status: int, level: int
) -> None:
    async def endpoint(deps: Deps, args: Sequence[str | None], headers: HTTPHeaders,
                       body: bytes) -> Reply:
        return Reply(status, b"{}")

    router = Router(RecordingApplication(), Deps(manager=None),  # type: ignore[arg-type]
                    [Endpoint(r"/run/([^/]+)", endpoint, _error)])
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        await exchange(router, "/run/abc?q=1", [b"x"])
    [record] = [r for r in caplog.records if r.name == "tornado.access"]
    assert record.levelno == level
    assert record.getMessage().startswith(f"{status} POST /run/abc?q=1 (127.0.0.9) ")
    assert record.getMessage().endswith("ms")
