"""ovserve's HTTP/1.1 server: listens, and serves each connection with :mod:`.protocol`
(asyncio's protocol API and the httptools parser) for a Tornado ``HTTPServerConnectionDelegate``
(the :class:`~.direct.Router` in front of the application). Called by :mod:`ovserve.server.cli`
(and the bench's bare delegate, bench/floor.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from tornado.httputil import HTTPServerConnectionDelegate

from .protocol import Connection

log = logging.getLogger("ovserve.server.http")

MAX_HEADER_SIZE = 64 * 1024
"""Request line and headers, as Tornado's default ``max_header_size``. A head whose line has
not ended is counted per read, from the read after the one it began in: such a head is
refused within this plus one read (:data:`READ_SIZE`)."""
SWEEP_SECONDS = 30.0
"""How often idle and stalled connections are looked for."""


class HTTPServer:
    """Listens on a port and serves every connection with ``delegate``."""

    def __init__(self, delegate: HTTPServerConnectionDelegate, *,
                 ssl_context: ssl.SSLContext | None = None, max_body_size: int,
                 max_header_size: int = MAX_HEADER_SIZE, idle_timeout: float = 3600.0,
                 body_timeout: float = 300.0) -> None:
        """``idle_timeout``: a connection waiting that long for a request closes (Tornado's
        ``idle_connection_timeout``); ``body_timeout``: one whose request, partly received,
        has sent nothing for that long closes (a stalled upload holds its buffer, up to
        16 MiB for a body read into one, until then; Tornado's default was no limit)."""
        self.delegate = delegate
        self.ssl_context = ssl_context
        self.max_body_size = max_body_size
        self.max_header_size = max_header_size
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.connections: set[Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._sweeper: asyncio.TimerHandle | None = None

    async def listen(self, port: int, address: str | None = None) -> list[socket.socket]:
        """Start accepting on ``address:port``; the sockets listened on."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Connection(self), host=address or None, port=port, ssl=self.ssl_context,
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
        now = asyncio.get_running_loop().time()  # time.monotonic(), as Connection.last_read
        for conn in list(self.connections):
            if conn.idle_since is not None and now - conn.idle_since > self.idle_timeout:
                conn.close()
            elif conn.receiving and now - conn.last_read > self.body_timeout:
                log.info("Closing the connection of %s: its request stalled for %.0f s",
                         conn.context, now - conn.last_read)
                conn.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)
