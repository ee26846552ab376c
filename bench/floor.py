"""The FLOOR: a bare Tornado app that answers each POST with a fixed, pre-recorded body.

Started by :mod:`run` as a separate process (``python bench/floor.py --port P --responses DIR``).
``DIR`` holds one ``<case>.bin`` per benchmark case: the response ovserve gives for that case's
request (or a locally computed one of the same size). ``POST /case/<case>`` reads the request
body Tornado has buffered and writes that response. Nothing else happens: no parsing, no
inference. This is the most a Tornado server on this Python can do for the same bytes in and
out, so ovserve's throughput divided by the floor's says how much of Tornado's budget ovserve's
own work costs.

Tornado's default settings, as the issue defines the floor, except ``--chunk-size`` (the pieces a
body is read in; default Tornado's 64 KiB). ovserve reads a body over 64 KiB into one buffer as
the socket delivers it; ``make bench BENCH_ARGS=--floor-chunk-size=1048576`` measures against a
floor with 1 MiB pieces too (docs/performance.md).

With ``--bare`` (a second process), ``POST /bare/<case>`` answers the same bytes with the same
headers as ovserve's inference routes from a bare ``HTTPMessageDelegate`` in front of the app,
on ovserve's own HTTP server (``ovserve.server.http.server``: asyncio's protocol API and
httptools instead of Tornado's ``HTTPServer``): the machinery those routes run on
(``http/direct.py``, no ``RequestHandler``). ``make bench`` reports ovserve against it too, as
information: ovserve's own cost, with the HTTP layer both share left out of the comparison.

``GET /ready`` answers ``ok`` once the app listens (the harness polls it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import tornado
import tornado.httpserver
import tornado.httputil
import tornado.web
from tornado.httputil import HTTPHeaders, ResponseStartLine

from ovserve.server.http.server import HTTPServer


class FixedResponse(tornado.web.RequestHandler):
    """``POST /case/<name>``: touch the body, write the recorded response for ``<name>``."""

    def initialize(self, responses: dict[str, bytes]) -> None:
        self.responses = responses

    def post(self, name: str) -> None:
        if not self.request.body:
            raise tornado.web.HTTPError(400)
        response = self.responses.get(name)
        if response is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "application/json")
        self.write(response)


class Ready(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


def make_app(responses: dict[str, bytes]) -> tornado.web.Application:
    return tornado.web.Application([
        (r"/case/([a-z0-9_]+)", FixedResponse, {"responses": responses}),
        (r"/ready", Ready),
    ])


_OK = ResponseStartLine("HTTP/1.1", 200, "OK")
_SERVER = f"TornadoServer/{tornado.version}"


_dates: dict[int, str] = {}


def _date() -> str:
    """The Date header, formatted once a second (as ovserve does)."""
    now = int(time.time())
    text = _dates.get(now)
    if text is None:
        _dates.clear()
        text = _dates[now] = tornado.httputil.format_timestamp(now)
    return text


class Bare(tornado.httputil.HTTPMessageDelegate):
    """``POST /bare/<name>``: read the body, write the recorded response and the headers ovserve
    sends (Server, Content-Type, Date, CORS, Content-Length); anything else goes to the app."""

    def __init__(self, front: Front, server_conn: object, conn: Any) -> None:
        self.front, self.server_conn, self.conn = front, server_conn, conn
        self.inner: tornado.httputil.HTTPMessageDelegate | None = None
        self.chunks: list[bytes] = []
        self.response = b""

    def headers_received(self, start_line: Any, headers: HTTPHeaders) -> Any:
        name = start_line.path.rpartition("/")[2]
        if start_line.method == "POST" and start_line.path.startswith("/bare/") and \
                name in self.front.responses:
            self.response = self.front.responses[name]
            return None
        self.inner = self.front.app.start_request(self.server_conn, self.conn)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        if self.inner is not None:
            return self.inner.data_received(chunk)
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        if self.inner is not None:
            self.inner.finish()
            return
        if not b"".join(self.chunks):
            raise ValueError("empty body")
        headers = HTTPHeaders()
        headers["Server"] = _SERVER
        headers["Content-Type"] = "application/json"
        headers["Date"] = _date()
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Content-Length"] = str(len(self.response))
        self.conn.write_headers(_OK, headers, self.response)
        self.conn.finish()

    def on_connection_close(self) -> None:
        if self.inner is not None:
            self.inner.on_connection_close()


class Front(tornado.httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: tornado.web.Application, responses: dict[str, bytes]) -> None:
        self.app, self.responses = app, responses

    def start_request(self, server_conn: object, request_conn: Any) -> Bare:
        return Bare(self, server_conn, request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


def load_responses(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.bin"))}


async def serve(host: str, port: int, responses: dict[str, bytes], chunk_size: int,
                bare: bool) -> None:
    app = make_app(responses)
    server: tornado.httpserver.HTTPServer | HTTPServer
    if bare:
        server = HTTPServer(Front(app, responses), max_body_size=256 * 2**20)
        await server.listen(port, host)
    else:
        server = tornado.httpserver.HTTPServer(app, max_body_size=256 * 2**20,
                                               chunk_size=chunk_size)
        server.listen(port, host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--responses", type=Path, required=True, help="folder of <case>.bin files")
    p.add_argument("--chunk-size", type=int, default=65536, help="Tornado's chunk_size")
    p.add_argument("--bare", action="store_true", help="serve /bare/<case> (see above)")
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port, load_responses(args.responses), args.chunk_size,
                      args.bare))


if __name__ == "__main__":
    main()
