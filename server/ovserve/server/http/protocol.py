"""ovserve's HTTP/1.1 server: asyncio's protocol API and the ``httptools`` parser, serving a
Tornado ``HTTPServerConnectionDelegate`` (the :class:`~.direct.Router` in front of the
application). Called by :mod:`ovserve.server.cli`.

Why not Tornado's ``HTTPServer``: its ``IOStream`` and ``HTTP1Connection`` cost ~150-200 us of
the event loop a request on these machines (futures, a coroutine step per read, header parsing
in Python), where an ``asyncio.Protocol`` fed by a C parser costs ~25 us (docs/performance.md).
Everything above the connection stays Tornado's: each request gets an object implementing
``tornado.httputil.HTTPConnection`` (:class:`_Message`), and the delegate sees the same calls in
the same order as under ``HTTP1Connection`` -- ``headers_received`` (awaited when it returns an
awaitable), ``data_received`` per piece of body (likewise), ``finish`` -- so ``RequestHandler``\\ s,
``stream_request_body`` and the direct routes work unchanged.

What the connection does, as ``HTTP1Connection`` did:

* keep-alive by Tornado's rule (HTTP/1.1 unless ``Connection: close``; HTTP/1.0 only with
  ``Connection: keep-alive`` on a request with a body length, or a GET/HEAD), and
  ``Connection: close`` / ``Connection: Keep-Alive`` on the response as Tornado adds them;
* pipelining: requests are answered one at a time, in order; requests that arrive while one is
  being answered wait, parsed, with their bodies (reading pauses above :data:`PIPELINE_LIMIT`
  bytes of them), and the next one is taken only once the answers before it are mostly sent
  (the transport's write buffer under its high-water mark), so a client that pipelines and
  never reads cannot make the server buffer without bound;
* ``Expect: 100-continue`` answered once the delegate took the headers, unless it has already
  answered (the body limit's early ``413``);
* a response finished before the delegate was given the whole request closes the connection
  once written (the only way not to read the rest of a refused body);
* chunked responses for HTTP/1.1 responses without ``Content-Length`` (none for HEAD, 1xx, 204,
  304); ``Content-Length`` checked against what is written; a CR or LF in a header refused;
* what a delegate raises (or its awaitable fails with) ends the connection: an
  ``HTTPInputError`` (``HTTPServerRequest``'s "Missing Host header") with a ``400``, anything
  else logged; the delegate is then told the connection closed;
* the body limit (``max_body_size``, which a delegate may lift per request with
  ``set_max_body_size``): a larger declared or chunked body gets ``413`` and the connection
  closes;
* an idle connection (no complete request head) closes after ``idle_timeout``.

Beyond Tornado: a malformed request gets ``400`` with ``Connection: close`` (Tornado wrote a
bare status line), request heads over ``max_header_size`` get ``431`` (Tornado closed the
connection without an answer), an ``Upgrade`` request without a body is served as plain
HTTP/1.1 (as Tornado did), one with a body gets ``400``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
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

log = logging.getLogger("ovserve.server.http")

MAX_HEADER_SIZE = 64 * 1024
"""Request line and headers, as Tornado's default ``max_header_size``. A head whose line has
not ended is counted per read, from the read after the one it began in: such a head is
refused within this plus one read (:data:`READ_SIZE`)."""
PIPELINE_LIMIT = 1 << 20
"""Bytes of parsed, not yet delivered requests after which the connection stops reading."""
SWEEP_SECONDS = 30.0
"""How often idle connections are looked for."""
READ_SIZE = 256 * 1024
"""The connection's socket reads (asyncio's own size)."""
DIRECT_MIN = 64 * 1024
"""A body with a ``Content-Length`` over this is read into one buffer of its size, the socket
reading straight into it: one copy less than the parser's pieces, which would be joined again,
and a writable buffer the codecs share with OpenVINO instead of copying."""
DIRECT_MAX = 16 << 20
"""... and at most this: the buffer is allocated when the head arrives, before any body byte,
so this bounds what a client that declares a body and sends none makes the server hold."""


_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"  # Tornado's text
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0", "0.9": "HTTP/0.9"}


def _status(code: int, reason: str) -> bytes:
    body = f"{code} {reason}\n".encode()
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: "
            f"{len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class _Context:
    """What ``HTTPServerRequest`` reads from ``connection.context``."""

    __slots__ = ("address", "protocol", "remote_ip")

    def __init__(self, address: Any, protocol: str) -> None:
        self.address = address
        self.protocol = protocol
        self.remote_ip = address[0] if isinstance(address, tuple) else "0.0.0.0"

    def __str__(self) -> str:
        return str(self.remote_ip)


class HTTPServer:
    """Listens on a port and serves every connection with ``delegate``."""

    def __init__(self, delegate: HTTPServerConnectionDelegate, *,
                 ssl_context: ssl.SSLContext | None = None, max_body_size: int,
                 max_header_size: int = MAX_HEADER_SIZE, idle_timeout: float = 3600.0) -> None:
        self.delegate = delegate
        self.ssl_context = ssl_context
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, port: int, address: str | None = None) -> list[socket.socket]:
        """Start accepting on ``address:port``; the sockets listened on."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), host=address or None, port=port, ssl=self.ssl_context,
            backlog=128, reuse_address=True)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
        return list(server.sockets)

    def stop(self) -> None:
        """Stop accepting connections (those open are served on)."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def close_all_connections(self, timeout: float = 5.0) -> None:
        """Close every connection once its written data is sent (at most ``timeout``)."""
        for conn in list(self.connections):
            conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.abort()

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for conn in list(self.connections):
            if conn.idle_since is not None and now - conn.idle_since > self.idle_timeout:
                conn.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)


class _Message(HTTPConnection):
    """One request: its parsed parts until the delegate has them, and its response.

    Implements ``tornado.httputil.HTTPConnection`` for the delegate (``write_headers``,
    ``write``, ``finish``, ``set_close_callback``, ``set_max_body_size``,
    ``set_body_timeout``)."""

    __slots__ = ("_chunking", "_close_callback", "_conn", "_remaining", "chunks", "complete",
                 "context", "delegate", "delivered", "error", "finished", "head_size", "headers",
                 "keep_alive", "max_body_size", "received", "start_line", "written")

    def __init__(self, conn: _Connection, start_line: RequestStartLine, headers: HTTPHeaders,
                 keep_alive: bool) -> None:
        self._conn = conn
        self.context = conn.context
        self.start_line = start_line
        self.headers = headers
        self.keep_alive = keep_alive
        self.max_body_size = conn.server.max_body_size
        self.chunks: deque[bytes] = deque()  # body pieces parsed, not yet delivered
        self.received = 0  # body bytes parsed
        self.head_size = 0  # bytes of the request head
        self.complete = False  # the whole request parsed
        self.error: bytes | None = None  # an answer of the connection's own (400, 413, 431)
        self.delegate: HTTPMessageDelegate | None = None
        self.delivered = False  # delegate.finish() called
        self.written = False  # write_headers called
        self.finished = False  # the response finished
        self._chunking = False
        self._remaining: int | None = None
        self._close_callback: Callable[[], None] | None = None

    # ---------------------------------------------------------------- HTTPConnection

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self._close_callback = callback

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def set_body_timeout(self, timeout: float) -> None:
        """Accepted for Tornado's interface and ignored: as under Tornado's defaults, a body
        has no time limit (the idle sweep closes connections waiting for a request head)."""

    def detach(self) -> Any:
        raise NotImplementedError("ovserve's HTTP connections cannot be detached")

    def write_headers(self, start_line: ResponseStartLine | RequestStartLine,
                      headers: HTTPHeaders, chunk: bytes | None = None) -> asyncio.Future[None]:
        assert isinstance(start_line, ResponseStartLine)
        request = self.start_line
        code = start_line.code
        self.written = True
        bodiless = request.method == "HEAD" or code in (204, 304) or 100 <= code < 200
        self._chunking = (request.version == "HTTP/1.1" and not bodiless
                          and "Content-Length" not in headers
                          and "Transfer-Encoding" not in headers)
        if bodiless:
            self._remaining = 0
        elif "Content-Length" in headers:
            self._remaining = int(headers["Content-Length"])
        else:
            self._remaining = None
            if not self._chunking:  # a body only the connection's end can delimit
                self.keep_alive = False
        if headers.get("Connection", "").lower() == "close":
            self.keep_alive = False  # the delegate's word (the body limit's early answers)
        elif request.version == "HTTP/1.1" and not self.keep_alive:
            headers["Connection"] = "close"
        elif request.version == "HTTP/1.0" and self.keep_alive:
            headers["Connection"] = "Keep-Alive"
        if self._chunking:
            headers["Transfer-Encoding"] = "chunked"
        lines = [f"HTTP/1.1 {code} {start_line.reason}"]
        lines.extend(f"{name}: {value}" for name, value in headers.get_all())
        for line in lines:
            if "\r" in line or "\n" in line:  # would end the line, or the head, early
                raise ValueError(f"Illegal characters (CR or LF) in header: {line!r}")
        data = "\r\n".join(lines).encode("latin1") + b"\r\n\r\n"
        if chunk:
            data += self._frame(chunk)
        return self._conn.send(data)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        return self._conn.send(self._frame(chunk))

    def reply(self, code: int, reason: str, head: bytes, body: bytes,
              close: bool = False) -> None:
        """A whole response in one write, then :meth:`finish`: ``head`` is its header lines,
        each ending in CRLF, already checked, without ``Content-Length`` and ``Connection``,
        which this adds (``close``: the connection closes after it). For callers that format
        their own lines (the direct routes, http/direct.py): ``write_headers`` and an
        ``HTTPHeaders`` cost ~15 us more a request. Not for HEAD, 1xx, 204 or 304."""
        if close:
            self.keep_alive = False
        version = self.start_line.version
        if not self.keep_alive:
            connection = b"Connection: close\r\n" if version == "HTTP/1.1" else b""
        elif version == "HTTP/1.0":
            connection = b"Connection: Keep-Alive\r\n"
        else:
            connection = b""
        self.written = True
        self._conn.send(b"HTTP/1.1 %d %s\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
            code, reason.encode("latin1"), head, connection, len(body), body))
        self.finish()

    def finish(self) -> None:
        if self._remaining and not self._conn.closed:
            self._conn.abort()
            raise HTTPOutputError(
                f"Tried to write {self._remaining} bytes less than Content-Length")
        if self._chunking:
            self._conn.send(b"0\r\n\r\n")
        self.finished = True
        self._close_callback = None
        self._conn.response_finished(self)

    # ---------------------------------------------------------------- helpers

    def _frame(self, chunk: bytes) -> bytes:
        if self._remaining is not None:
            self._remaining -= len(chunk)
            if self._remaining < 0:
                self._conn.abort()
                raise HTTPOutputError("Tried to write more data than Content-Length")
        if self._chunking and chunk:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        return chunk

    def connection_closed(self) -> None:
        """The connection ended while this request was being read or answered."""
        callback, self._close_callback = self._close_callback, None
        delegate = self.delegate
        if delegate is not None and not self.delivered:
            self.delivered = True
            _guard(delegate.on_connection_close)
        if callback is not None:
            _guard(callback)


def _guard(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, an exception logged as Tornado's ``_ExceptionLoggingContext`` does."""
    try:
        return call(*args)
    except Exception:
        log.exception("Uncaught exception in the HTTP delegate")
        return None


class _Body:
    """A request body of known length read into one buffer (see :data:`DIRECT_MIN`)."""

    __slots__ = ("buffer", "filled", "message", "view")

    def __init__(self, message: _Message, length: int) -> None:
        self.message = message
        self.buffer = bytearray(length)
        self.view = memoryview(self.buffer)
        self.filled = 0

    def add(self, data: bytes) -> None:
        end = self.filled + len(data)
        self.view[self.filled:end] = data
        self.filled = end


class _Connection(asyncio.BufferedProtocol):
    """One client connection: parses requests and hands them, in order, to the delegate."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.context: _Context = _Context(None, "http")
        self.closed = False
        self.messages: deque[_Message] = deque()  # [0] is being answered
        self.idle_since: float | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._body: _Body | None = None  # the body being read straight into its buffer
        self._url: list[bytes] = []
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # of the head being parsed: its complete parts (url, header lines)
        self._head_fed = 0  # ... and the reads fed while in it (a line that never ends)
        self._in_head = False
        self._head_fresh = False  # the head began in the read being fed
        self._parsing: _Message | None = None
        self._buffered = 0  # bytes of parsed requests (heads, bodies) not yet delivered
        self._reading = True
        self._refused = False  # an error answer is due: read nothing more
        self._eof = False  # the client sent all it will (a half-close)
        self._waiting = False  # on an awaitable the delegate returned
        self._advancing = False
        self._write_paused = False
        self._drained: list[asyncio.Future[None]] = []
        self._closing = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.context = _Context(transport.get_extra_info("peername"),
                                "https" if transport.get_extra_info("sslcontext") else "http")
        self.idle_since = asyncio.get_running_loop().time()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for message in self.messages:
            message.connection_closed()
        self.messages.clear()
        for future in self._drained:
            if not future.done():
                future.set_exception(StreamClosedError())
                future.exception()  # retrieved: nobody need wait for it
        self._drained.clear()
        _guard(self.server.delegate.on_close, self)

    def get_buffer(self, sizehint: int) -> memoryview:
        body = self._body
        if body is not None:  # the parser has had the head and waits for the body: let it wait
            return body.view[body.filled:]
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        body = self._body
        if body is not None:
            body.filled += nbytes
            if body.filled == len(body.buffer):
                # The parser still waits for these bytes: a new one starts at the next request.
                self._parser = httptools.HttpRequestParser(self)
                self._body_complete(body)
                self._advance()
            return
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._closing:
            return
        self._head_fresh = False
        try:
            self._parser.feed_data(data)
            if self._in_head and not self._head_fresh:
                # All of this read belongs to a head that began in an earlier one and is still
                # not complete: httptools keeps a line's text until its end, unseen by
                # on_header, so count it here. (A head that began in this read is counted from
                # the next one: the bound is max_header_size plus at most one read.)
                self._head_fed += len(data)
                if self._head_fed > self.server.max_header_size:
                    raise _HeadTooLarge()
        except _HeadTooLarge:
            self._refuse(_status(431, "Request Header Fields Too Large"))
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data, upgrade.args[0])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self._refuse(_status(431, "Request Header Fields Too Large"))
            else:
                log.error("HTTP parser callback failed", exc_info=cause or exc)
                self._refuse(_status(500, "Internal Server Error"))
        except httptools.HttpParserError as exc:
            log.info("Malformed HTTP request from %s: %s", self.context, exc)
            self._refuse(_status(400, "Bad Request"))
        self._advance()

    def eof_received(self) -> bool:
        """The client half-closed: answer what it sent, then close. (A TLS transport closes
        anyway: keeping it open is not supported there.)"""
        self._eof = True
        assert self.transport is not None
        whole = not self._in_head and all(m.complete or m.error for m in self.messages)
        return (bool(self.messages) and whole  # a request cut short will not be answered
                and self.transport.get_extra_info("sslcontext") is None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drained, self._drained = self._drained, []
        for future in drained:
            if not future.done():
                future.set_result(None)
        self._advance()  # a request waiting for the answers before it to be sent

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self._url = []
        self._fields = []
        self._head_size = 0
        self._head_fed = 0
        self._in_head = True
        self._head_fresh = True

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields.append((name, value))
        self._grow(len(name) + len(value) + 4)

    def _grow(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.server.max_header_size:
            raise _HeadTooLarge()

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        # llhttp has checked the names and values as Tornado's ``add`` would again: a name's
        # first line is set (~1 us less a header), a repeated one added (joined with a comma)
        headers = HTTPHeaders()
        seen: set[bytes] = set()
        for name, value in self._fields:
            key = name.lower()
            if key in seen:
                headers.add(name.decode("latin1"), value.decode("latin1").strip())
            else:
                seen.add(key)
                headers[name.decode("latin1")] = value.decode("latin1").strip()
        version = _VERSIONS.get(parser.get_http_version(), "HTTP/1.1")
        start = RequestStartLine(parser.get_method().decode("latin1"),
                                 b"".join(self._url).decode("latin1"), version)
        message = _Message(self, start, headers, _keep_alive(start, headers))
        length = headers.get("Content-Length")
        if "Upgrade" in headers and (length not in (None, "0") or "Transfer-Encoding" in headers):
            message.error = _status(400, "Bad Request")  # see the module docstring
        elif (length is not None and length.isdigit()
              and DIRECT_MIN < int(length) <= min(DIRECT_MAX, message.max_body_size)):
            self._body = _Body(message, int(length))
        self._parsing = message
        self.messages.append(message)
        self.idle_since = None
        message.head_size = self._head_size
        self._hold(self._head_size)

    def on_body(self, body: bytes) -> None:
        message = self._parsing
        if message is None:
            return
        message.received += len(body)  # checked against the limit when delivered
        direct = self._body
        if direct is not None:
            direct.add(body)
            return
        message.chunks.append(body)
        self._hold(len(body))

    def _hold(self, size: int) -> None:
        """``size`` more bytes parsed and not delivered: stop reading above the limit."""
        self._buffered += size
        if self._buffered > PIPELINE_LIMIT and self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        body = self._body
        if body is not None:
            self._body_complete(body)
            return
        message = self._parsing
        if message is not None:
            message.complete = True
            self._parsing = None

    def _body_complete(self, body: _Body) -> None:
        """The whole body is in its buffer: the message's one piece of body."""
        self._body = None
        message = body.message
        message.received = len(body.buffer)
        message.chunks.append(body.buffer)  # type: ignore[arg-type]  # bytes-like, writable
        message.complete = True
        self._parsing = None
        self._hold(len(body.buffer))

    # ---------------------------------------------------------------- delivery

    def _advance(self) -> None:
        """Hand the first request's parts to its delegate as far as they go, then the next
        request's once the first is answered; one at a time, in order."""
        if self._advancing:
            return
        self._advancing = True
        try:
            while self.messages and not self._waiting and not self._closing:
                message = self.messages[0]
                if message.finished:
                    read = message.delivered or (message.complete and not message.chunks)
                    if not read or not message.keep_alive:
                        self.close()  # answered before it was read, or no keep-alive
                        return
                    self.messages.popleft()
                    if not self.messages:
                        if self._eof:  # nothing more will come
                            self.close()
                            return
                        self.idle_since = asyncio.get_running_loop().time()
                    self._resume_reading()
                    if self._write_paused:  # the next request waits until the answers so far
                        return  # are mostly sent (resume_writing); so reading stops in time
                    continue
                if message.error is not None:
                    self._send_error(message.error)
                    return
                delegate = message.delegate
                if delegate is None:
                    self._deliver_headers(message)
                    continue
                if message.chunks:
                    chunk = message.chunks.popleft()
                    self._buffered -= len(chunk)
                    self._resume_reading()
                    if not self._check_size(message):
                        return
                    self._wait_for(message, self._call(message, delegate.data_received, chunk))
                    continue
                if message.complete and not message.delivered:
                    message.delivered = True
                    self._call(message, delegate.finish)
                    continue
                break
        finally:
            self._advancing = False

    def _deliver_headers(self, message: _Message) -> None:
        self._buffered -= message.head_size
        self._resume_reading()
        delegate = self.server.delegate.start_request(self, message)
        message.delegate = delegate
        result = self._call(message, delegate.headers_received, message.start_line,
                            message.headers)
        self._wait_for(message, result, lambda: self._after_headers(message))

    def _call(self, message: _Message, method: Callable[..., Any], *args: Any) -> Any:
        """A call of the request's delegate; what it raises ends the connection, as under
        Tornado: ``HTTPInputError`` (e.g. ``HTTPServerRequest``'s "Missing Host header") with a
        400, anything else logged, and the delegate is told the connection closed."""
        try:
            return method(*args)
        except Exception as exc:
            self._delegate_failed(message, exc)
            return None

    def _delegate_failed(self, message: _Message, exc: BaseException) -> None:
        if isinstance(exc, HTTPInputError):
            log.info("Malformed HTTP request from %s: %s", self.context, exc)
            self._send_error(_status(400, "Bad Request"))
        else:
            log.error("Uncaught exception in the HTTP delegate", exc_info=exc)
            self.close()
        if not message.delivered:
            message.delivered = True
            delegate = message.delegate
            if delegate is not None:
                _guard(delegate.on_connection_close)

    def _after_headers(self, message: _Message) -> None:
        if message.finished or self._closing:
            return
        length = message.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > message.max_body_size:
            self._refuse_message(message)
            return
        if message.headers.get("Expect") == "100-continue" and not message.written:
            self.send(_CONTINUE)

    def _check_size(self, message: _Message) -> bool:
        if message.received <= message.max_body_size or message.written:
            return True
        self._refuse_message(message)
        return False

    def _refuse_message(self, message: _Message) -> None:
        message.delivered = True
        delegate = message.delegate
        if delegate is not None:
            _guard(delegate.on_connection_close)
        self._send_error(_status(413, "Payload Too Large"))

    def _wait_for(self, message: _Message, result: Awaitable[None] | None,
                  then: Callable[[], None] | None = None) -> None:
        """Go on (``then``, then delivery) once ``result``, what the delegate returned, is done:
        at once when it is ``None``, as Tornado awaits it otherwise (its failure is the
        delegate's, :meth:`_call`)."""
        if self._closing:
            return
        if result is not None:
            future = asyncio.ensure_future(result)
            if not future.done():
                self._waiting = True
                future.add_done_callback(lambda done: self._resume(message, done, then))
                return
            if self._failed(message, future):
                return
        if then is not None:
            then()

    def _resume(self, message: _Message, future: asyncio.Future[Any],
                then: Callable[[], None] | None) -> None:
        self._waiting = False
        if self.closed or self._failed(message, future):
            return
        if then is not None:
            then()
        self._advance()

    def _failed(self, message: _Message, future: asyncio.Future[Any]) -> bool:
        if future.cancelled():
            self.close()
            return True
        exc = future.exception()
        if exc is not None:
            self._delegate_failed(message, exc)
            return True
        return False

    # ---------------------------------------------------------------- writing and closing

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write ``data``; the future is done when the transport has taken it (at once, unless
        the client reads slower than the server writes)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            future.set_exception(StreamClosedError())
            future.exception()
            return future
        transport.write(data)
        if self._write_paused:
            self._drained.append(future)
        else:
            future.set_result(None)
        return future

    def response_finished(self, message: _Message) -> None:
        if not self._advancing:
            self._advance()

    def close(self) -> None:
        """Close once what was written is sent."""
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _send_error(self, data: bytes) -> None:
        self.send(data)
        self.close()

    def _refuse(self, data: bytes) -> None:
        """An error of the request being parsed: answered in its turn, after those before it."""
        self._refused = True
        self._in_head = False
        self._parser = httptools.HttpRequestParser(self)  # nothing more is parsed anyway
        message = self._parsing
        if message is None:
            message = _Message(self, RequestStartLine("GET", "/", "HTTP/1.1"), HTTPHeaders(),
                               False)
            self.messages.append(message)
        message.error = data
        self._parsing = None
        if self._reading and self.transport is not None:
            self._reading = False
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if (not self._reading and not self._refused and self._buffered <= PIPELINE_LIMIT // 2
                and self.transport):
            self._reading = True
            self.transport.resume_reading()

    def _upgrade(self, data: bytes | memoryview, offset: int) -> None:
        """An ``Upgrade`` request ends the parser's work: serve it as plain HTTP/1.1 and parse
        what follows with a new parser."""
        self._parser = httptools.HttpRequestParser(self)
        rest = data[offset:]
        if rest and not (self.messages and self.messages[-1].error is not None):
            self.data_received(rest)


class _HeadTooLarge(Exception):
    """Raised in a parser callback when the request head passes ``max_header_size``."""


def _keep_alive(start: RequestStartLine, headers: HTTPHeaders) -> bool:
    """Tornado's ``HTTP1Connection._can_keep_alive`` for a request."""
    connection = headers.get("Connection")
    if connection is not None:
        connection = connection.lower()
    if start.version == "HTTP/1.1":
        return connection != "close"
    if ("Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower()
            or start.method in ("HEAD", "GET")):
        return connection == "keep-alive"
    return False
