"""One request on an ovserve HTTP connection, as Tornado's delegates see it
(:mod:`.protocol` makes them).

:class:`Message` implements ``tornado.httputil.HTTPConnection`` (``write_headers``, ``write``,
``finish``, ``set_close_callback``, ``set_max_body_size``) and frames the response as Tornado's
``HTTP1Connection`` did: chunked for an HTTP/1.1 response without ``Content-Length`` (none for
HEAD, 1xx, 204, 304), ``Content-Length`` checked against what is written, ``Connection: close`` /
``Connection: Keep-Alive`` added as Tornado added them, a CR or LF in a header refused.
:meth:`Message.reply` is the one-write answer of the direct routes (http/direct.py). It also
keeps the request's parsed parts until the connection hands them to the delegate.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.httputil import (
    HTTPConnection,
    HTTPHeaders,
    HTTPMessageDelegate,
    HTTPOutputError,
    RequestStartLine,
    ResponseStartLine,
)

if TYPE_CHECKING:
    from .protocol import Connection

log = logging.getLogger("ovserve.server.http")


def answer(code: int, reason: str) -> bytes:
    """A plain-text answer of the connection itself (400, 413, 431, ...), closing it."""
    body = f"{code} {reason}\n".encode()
    return (f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: "
            f"{len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class Context:
    """What ``HTTPServerRequest`` reads from ``connection.context``."""

    __slots__ = ("address", "protocol", "remote_ip")

    def __init__(self, address: Any, protocol: str) -> None:
        self.address = address
        self.protocol = protocol
        self.remote_ip = address[0] if isinstance(address, tuple) else "0.0.0.0"

    def __str__(self) -> str:
        return str(self.remote_ip)


class Message(HTTPConnection):
    """One request: its parsed parts until the delegate has them, and its response.

    Implements ``tornado.httputil.HTTPConnection`` for the delegate (``write_headers``,
    ``write``, ``finish``, ``set_close_callback``, ``set_max_body_size``,
    ``set_body_timeout``)."""

    __slots__ = ("_chunking", "_close_callback", "_conn", "_remaining", "chunks", "complete",
                 "context", "delegate", "delivered", "error", "finished", "head_size", "headers",
                 "keep_alive", "max_body_size", "received", "start_line", "written")

    def __init__(self, conn: Connection, start_line: RequestStartLine, headers: HTTPHeaders,
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
        """Accepted for Tornado's interface and ignored: the server's ``body_timeout`` (a
        request that stalls) applies to every request."""

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
        their own lines (the direct routes, http/direct.py): with ``write_headers`` and an
        ``HTTPHeaders`` their answer cost ~14 us more (20 against 6, measured alone). Not for
        HEAD, 1xx, 204 or 304."""
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
        self._conn.response_finished()

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
            guard(delegate.on_connection_close)
        if callback is not None:
            guard(callback)


def guard(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, an exception logged as Tornado's ``_ExceptionLoggingContext`` does."""
    try:
        return call(*args)
    except Exception:
        log.exception("Uncaught exception in the HTTP delegate")
        return None
