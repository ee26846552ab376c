"""ovserve's HTTP/1.1 connections: asyncio's protocol API and the ``httptools`` parser, serving
a Tornado ``HTTPServerConnectionDelegate`` (the :class:`~.direct.Router` in front of the
application). Made by :class:`.server.HTTPServer`; each request is a :class:`.message.Message`.

Why not Tornado's ``HTTPServer``: on these machines a minimal loop on its ``IOStream`` alone
(no HTTP parsing) cost 152-195 us of the event loop a request (futures, a coroutine step per
read), a minimal ``asyncio.Protocol`` 24-28 us; ``HTTP1Connection`` adds header parsing in
Python on top. A bare delegate on this server answers 7.6-11.6k req/s, on Tornado's 3.7-4.8k
(docs/performance.md).
Everything above the connection stays Tornado's: each request gets an object implementing
``tornado.httputil.HTTPConnection`` (:class:`Message`), and the delegate sees the same calls in
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
* an idle connection (no complete request head) closes after ``idle_timeout``; beyond Tornado,
  one whose request is partly received and sends nothing for ``body_timeout`` closes too.

Beyond Tornado: a malformed request gets ``400`` with ``Connection: close`` (Tornado wrote a
bare status line), request heads over ``max_header_size`` get ``431`` (Tornado closed the
connection without an answer), an ``Upgrade`` request without a body is served as plain
HTTP/1.1 (as Tornado did), one with a body gets ``400``; chunk extensions and trailers are
accepted (RFC 9112; Tornado answered ``400``); a client that half-closes after its requests gets
their answers, then the connection closes (plain TCP; asyncio's TLS transports close at the
peer's EOF); a body with a ``Content-Length`` over :data:`DIRECT_MIN` is read from the socket
straight into one buffer (:class:`_Body`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httptools
from tornado.httputil import HTTPHeaders, HTTPInputError, RequestStartLine
from tornado.iostream import StreamClosedError

from .message import Context, Message, answer, guard

if TYPE_CHECKING:
    from .server import HTTPServer

log = logging.getLogger("ovserve.server.http")

PIPELINE_LIMIT = 1 << 20
"""Bytes of parsed, not yet delivered requests after which the connection stops reading."""
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


class _Body:
    """A request body of known length read into one buffer (see :data:`DIRECT_MIN`)."""

    __slots__ = ("buffer", "filled", "message", "view")

    def __init__(self, message: Message, length: int) -> None:
        self.message = message
        self.buffer = bytearray(length)
        self.view = memoryview(self.buffer)
        self.filled = 0

    def add(self, data: bytes) -> None:
        end = self.filled + len(data)
        self.view[self.filled:end] = data
        self.filled = end


class Connection(asyncio.BufferedProtocol):
    """One client connection: parses requests and hands them, in order, to the delegate."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.context: Context = Context(None, "http")
        self.closed = False
        self.messages: deque[Message] = deque()  # [0] is being answered
        self.idle_since: float | None = None
        self.last_read = time.monotonic()  # when the client last sent something
        self._parser = httptools.HttpRequestParser(self)
        self._buffer = memoryview(bytearray(READ_SIZE))
        self._body: _Body | None = None  # the body being read straight into its buffer
        self._url: list[bytes] = []
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_size = 0  # of the head being parsed: its complete parts (url, header lines)
        self._head_fed = 0  # ... and the reads fed while in it (a line that never ends)
        self._in_head = False
        self._head_fresh = False  # the head began in the read being fed
        self._parsing: Message | None = None
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
        self.context = Context(transport.get_extra_info("peername"),
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
        guard(self.server.delegate.on_close, self)

    def get_buffer(self, sizehint: int) -> memoryview:
        body = self._body
        if body is not None:  # the parser has had the head and waits for the body: let it wait
            return body.view[body.filled:]
        return self._buffer

    @property
    def receiving(self) -> bool:
        """A request is partly received (its head, or its body)."""
        return (self._in_head or self._body is not None
                or (self._parsing is not None and not self._parsing.complete))

    def buffer_updated(self, nbytes: int) -> None:
        self.last_read = time.monotonic()
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
            self._refuse(answer(431, "Request Header Fields Too Large"))
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data, upgrade.args[0])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self._refuse(answer(431, "Request Header Fields Too Large"))
            else:
                log.error("HTTP parser callback failed", exc_info=cause or exc)
                self._refuse(answer(500, "Internal Server Error"))
        except httptools.HttpParserError as exc:
            log.info("Malformed HTTP request from %s: %s", self.context, exc)
            self._refuse(answer(400, "Bad Request"))
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
        message = Message(self, start, headers, _keep_alive(start, headers))
        length = headers.get("Content-Length")
        if "Upgrade" in headers and (length not in (None, "0") or "Transfer-Encoding" in headers):
            message.error = answer(400, "Bad Request")  # see the module docstring
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

    def _deliver_headers(self, message: Message) -> None:
        self._buffered -= message.head_size
        self._resume_reading()
        delegate = self.server.delegate.start_request(self, message)
        message.delegate = delegate
        result = self._call(message, delegate.headers_received, message.start_line,
                            message.headers)
        self._wait_for(message, result, lambda: self._after_headers(message))

    def _call(self, message: Message, method: Callable[..., Any], *args: Any) -> Any:
        """A call of the request's delegate; what it raises ends the connection, as under
        Tornado: ``HTTPInputError`` (e.g. ``HTTPServerRequest``'s "Missing Host header") with a
        400, anything else logged, and the delegate is told the connection closed."""
        try:
            return method(*args)
        except Exception as exc:
            self._delegate_failed(message, exc)
            return None

    def _delegate_failed(self, message: Message, exc: BaseException) -> None:
        if isinstance(exc, HTTPInputError):
            log.info("Malformed HTTP request from %s: %s", self.context, exc)
            self._send_error(answer(400, "Bad Request"))
        else:
            log.error("Uncaught exception in the HTTP delegate", exc_info=exc)
            self.close()
        if not message.delivered:
            message.delivered = True
            delegate = message.delegate
            if delegate is not None:
                guard(delegate.on_connection_close)

    def _after_headers(self, message: Message) -> None:
        if message.finished or self._closing:
            return
        length = message.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > message.max_body_size:
            self._refuse_message(message)
            return
        if message.headers.get("Expect") == "100-continue" and not message.written:
            self.send(_CONTINUE)

    def _check_size(self, message: Message) -> bool:
        if message.received <= message.max_body_size or message.written:
            return True
        self._refuse_message(message)
        return False

    def _refuse_message(self, message: Message) -> None:
        message.delivered = True
        delegate = message.delegate
        if delegate is not None:
            guard(delegate.on_connection_close)
        self._send_error(answer(413, "Payload Too Large"))

    def _wait_for(self, message: Message, result: Awaitable[None] | None,
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

    def _resume(self, message: Message, future: asyncio.Future[Any],
                then: Callable[[], None] | None) -> None:
        self._waiting = False
        if self.closed or self._failed(message, future):
            return
        if then is not None:
            then()
        self._advance()

    def _failed(self, message: Message, future: asyncio.Future[Any]) -> bool:
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

    def response_finished(self) -> None:
        """A request's response is finished: go on with the next (from within :meth:`_advance`
        too, which then just continues its loop)."""
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
            message = Message(self, RequestStartLine("GET", "/", "HTTP/1.1"), HTTPHeaders(),
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
