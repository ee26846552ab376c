"""The inference routes served straight off the HTTP connection, without a RequestHandler.

:class:`Router` is what the HTTP server (:mod:`.server`) is given (:func:`.app.make_app`).
For a ``POST`` whose path one of its :class:`~.base.Endpoint` patterns matches (v1
``:predict``, v2 ``/infer``) it reads the body and calls the endpoint itself; every other
request goes to the Tornado application, unchanged, by the application's own routing (the
same patterns route the other methods of those URLs to handlers that answer CORS preflights
and ``406``). Its answers go out in one write (``Message.reply``, :mod:`.message`).

Why: a ``RequestHandler`` costs about 40 % of the event loop's time on a small request
(routing through every rule, a handler object with ``clear()``, a task, output transforms, the
``finish``/``flush`` machinery), measured against a bare ``HTTPMessageDelegate`` serving the
same bytes (docs/performance.md). An inference is the request that must be fast; the rest keep
Tornado's conveniences. One more saving: the exchange runs at once in :meth:`_Exchange.finish`,
a task continuing only one that suspends (:func:`_run_eagerly`: an inline inference never does).

What a handler did that this module does too, so that clients see no difference: Tornado's path
matching and unquoting (``pattern$``, ``%xx`` decoded as UTF-8, ``400`` otherwise), the headers
(``Server``, ``Content-Type``, ``Date``, CORS, ``Content-Length``; ``Connection: close`` when the
body is refused before it is read), the body limit with the dialect's ``413`` (:mod:`.base`),
the in-flight count that shutdown drains, a ``500`` with the dialect's error body for a bug (the
traceback logged), and the ``tornado.access`` log line (``status method uri (ip) ms``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Coroutine, Generator, Sequence
from http.client import responses
from typing import Any

import tornado
import tornado.httputil
from tornado.escape import url_unescape
from tornado.httputil import HTTPHeaders, HTTPServerConnectionDelegate, ResponseStartLine
from tornado.log import access_log
from tornado.web import Application

from .base import (
    JSON,
    Deps,
    Endpoint,
    Reply,
    open_body,
    too_large_message,
)

log = logging.getLogger("ovserve.server.http")

_SERVER = f"TornadoServer/{tornado.version}"  # what RequestHandler sends


class _Head:
    """The header lines of the inference routes' answers, in a ``RequestHandler``'s order:
    ``Server``, ``Content-Type``, ``Date`` (formatted once a second), CORS."""

    _SERVER_LINE = f"Server: {_SERVER}\r\n".encode("latin1")

    def __init__(self, deps: Deps) -> None:
        lines = []
        cors = deps.cors
        if cors is not None:
            lines.append(f"Access-Control-Allow-Origin: {cors.allowed_origins}\r\n")
            if cors.allow_credentials:
                lines.append("Access-Control-Allow-Credentials: true\r\n")
        self._cors = _encode_lines(lines)
        self._second = -1
        self._rest = b""

    def lines(self, content_type: bytes) -> bytes:
        """The lines, with ``content_type`` (a ``Content-Type`` line, or nothing)."""
        now = time.time()
        if int(now) != self._second:
            self._second = int(now)
            date = tornado.httputil.format_timestamp(now)
            self._rest = f"Date: {date}\r\n".encode("latin1") + self._cors
        return self._SERVER_LINE + content_type + self._rest


def _encode_lines(lines: Sequence[str]) -> bytes:
    """Header lines (each ``name: value\\r\\n``) as bytes; a CR or LF inside one is refused, as
    it would end the line, or the head, early."""
    for line in lines:
        if "\r" in line[:-2] or "\n" in line[:-2]:
            raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
    return "".join(lines).encode("latin1")


_JSON_TYPE = f"Content-Type: {JSON}\r\n".encode()


class Router(HTTPServerConnectionDelegate):
    """The HTTP server's delegate: :data:`endpoints` directly, the application for the rest."""

    def __init__(self, application: Application, deps: Deps, endpoints: Sequence[Endpoint]) -> None:
        self.application = application
        self.deps = deps
        self.endpoints = [(re.compile(e.pattern + "$"), e) for e in endpoints]
        self.head = _Head(deps)

    def start_request(self, server_conn: object, request_conn: Any) -> _Exchange:
        return _Exchange(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.application.on_close(server_conn)

    def match(self, path: str) -> tuple[Endpoint, list[str | None] | None] | None:
        """The endpoint for a request path (query included) and its path arguments as Tornado
        matches and unquotes them (``None`` for arguments that are not UTF-8 once unquoted);
        ``None`` when no endpoint's pattern matches."""
        query = path.find("?")
        if query >= 0:
            path = path[:query]
        for regex, endpoint in self.endpoints:
            found = regex.match(path)
            if found is not None:
                try:
                    return endpoint, [_unquote(group) for group in found.groups()]
                except UnicodeDecodeError:
                    return endpoint, None
        return None


def _unquote(group: str | None) -> str | None:
    """A path argument as a handler receives it (``url_unescape``, then strict UTF-8)."""
    if group is None or "%" not in group:
        return group
    return url_unescape(group, encoding=None, plus=False).decode("utf-8")


def _run_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now, up to its first suspension; a task runs the rest, if any.

    An inference on the inline path never suspends, and then this saves the task and the trip
    through the event loop that ``create_task`` costs (Python 3.12's eager tasks, by hand). The
    first step runs in the caller's context (Tornado's connection task); nothing in an exchange
    depends on the current task."""
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    except BaseException:
        coro.close()
        raise
    task = asyncio.get_running_loop().create_task(_Resume(coro, first).run())
    # A task cancelled before its first step never runs: close the coroutine then, so that its
    # ``finally`` blocks run (closing a finished coroutine does nothing).
    task.add_done_callback(lambda _: coro.close())
    return task


class _Resume:
    """Drives a coroutine that has already run to its first suspension (see :func:`_run_eagerly`).

    It yields on what the coroutine yielded (a future the task then waits for, or ``None``), and
    passes the task's cancellation on."""

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    async def run(self) -> None:
        await self

    def __await__(self) -> Generator[Any, None, None]:
        coro = self._coro
        waiting = self._first
        while True:
            try:
                yield waiting
            except BaseException as exc:  # thrown in by the task (cancellation)
                try:
                    waiting = coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting = coro.send(None)
            except StopIteration:
                return


class _Exchange(tornado.httputil.HTTPMessageDelegate):
    """One request on a connection: served here when it matches an endpoint, else handed on."""

    _args: list[str | None]
    _chunks: list[bytes | bytearray]
    _endpoint: Endpoint
    _headers: HTTPHeaders
    _size: int
    _start: tornado.httputil.RequestStartLine
    _started: float

    def __init__(self, router: Router, server_conn: object, request_conn: Any) -> None:
        self._router = router
        self._server_conn = server_conn
        self._conn = request_conn
        self._inner: tornado.httputil.HTTPMessageDelegate | None = None
        self._counted = False
        self._replied = False
        self._closed = False
        self._serving = False
        self._task: asyncio.Task[None] | None = None  # the rest of a suspended exchange

    # -------------------------------------------------------------- HTTPMessageDelegate

    def headers_received(
        self,
        start_line: tornado.httputil.RequestStartLine | ResponseStartLine,
        headers: HTTPHeaders,
    ) -> Any:
        assert isinstance(start_line, tornado.httputil.RequestStartLine)
        found = self._router.match(start_line.path) if start_line.method == "POST" else None
        if found is not None:
            self._begin(start_line, headers)
            self._endpoint, args = found
            if args is None:  # Tornado: HTTPError(400) from RequestHandler.decode_argument
                log.warning("Invalid unicode in the URL path: %s", start_line.path)
                self._refuse(Reply(400, self._endpoint.encode_error("Bad Request")))
                return None
            self._args = args
            if open_body(self._conn, headers.get("Content-Length")) > self._router.deps.max_body_bytes:
                self._refuse_too_large()
            return None
        self._inner = self._router.application.start_request(self._server_conn, self._conn)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self._inner is not None:
            return self._inner.data_received(chunk)
        if self._replied:
            return None
        self._size += len(chunk)
        if self._size > self._router.deps.max_body_bytes:
            self._chunks.clear()
            self._refuse_too_large()
            return None
        self._chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self._inner is not None:
            self._inner.finish()
            return
        if self._replied:
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._serving = True
        self._task = _run_eagerly(self._serve(body))

    def on_connection_close(self) -> None:
        if self._inner is not None:
            self._inner.on_connection_close()
            return
        self._closed = True
        if not self._serving:  # no inference running: nothing left to wait for
            self._uncount()

    # -------------------------------------------------------------- serving

    def _begin(self, start_line: tornado.httputil.RequestStartLine, headers: HTTPHeaders) -> None:
        self._start = start_line
        self._headers = headers
        self._started = time.perf_counter()
        self._chunks = []
        self._size = 0
        self._router.deps.inflight.count += 1
        self._counted = True

    async def _serve(self, body: bytes | bytearray) -> None:
        endpoint = self._endpoint
        try:
            try:
                reply = await endpoint.serve(self._router.deps, self._args, self._headers, body)
            except Exception:  # a bug: log it, never leak a traceback to the client
                log.exception("Uncaught exception %s %s", self._start.method, self._start.path)
                reply = Reply(500, endpoint.encode_error("Internal server error"))
            self._reply(reply)
        finally:  # also when cancelled (the server shutting down)
            self._uncount()

    def _refuse_too_large(self) -> None:
        message = too_large_message(self._router.deps.max_body_bytes)
        self._refuse(Reply(413, self._endpoint.encode_error(message)))

    def _refuse(self, reply: Reply) -> None:
        """Answer before the body is read; the connection closes once the answer is written."""
        self._reply(reply, close=True)
        self._uncount()

    def _reply(self, reply: Reply, close: bool = False) -> None:
        self._replied = True
        conn = self._conn
        if self._closed:
            return
        if reply.headers:  # a Content-Type of its own, and more
            own = [(name, value) for name, value in reply.headers if name.lower() == "content-type"]
            content_type = _encode_lines([f"Content-Type: {own[-1][1]}\r\n"]) if own else _JSON_TYPE
            head = self._router.head.lines(content_type) + _encode_lines(
                [f"{name}: {value}\r\n" for name, value in reply.headers
                 if name.lower() != "content-type"])
        else:
            head = self._router.head.lines(_JSON_TYPE)
        status = reply.status
        # One write, and the connection's Content-Length and Connection headers (``close``: the
        # connection closes after this answer, and says so)
        conn.reply(status, responses.get(status, "Unknown"), head, reply.body, close)
        self._log(status)

    def _log(self, status: int) -> None:
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if access_log.isEnabledFor(level):
            remote = getattr(getattr(self._conn, "context", None), "remote_ip", None)
            access_log.log(level, "%d %s %s (%s) %.2fms", status, self._start.method,
                           self._start.path, remote, 1000.0 * (time.perf_counter() - self._started))

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._router.deps.inflight.count -= 1
