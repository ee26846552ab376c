"""The FLOOR: a bare Tornado app that answers each POST with a fixed, pre-recorded body.

Started by :mod:`run` as a separate process (``python bench/floor.py --port P --responses DIR``).
``DIR`` holds one ``<case>.bin`` per benchmark case: the response ovserve gives for that case's
request (or a locally computed one of the same size). ``POST /case/<case>`` reads the request
body Tornado has buffered and writes that response. Nothing else happens: no parsing, no
inference. This is the most a Tornado server on this Python can do for the same bytes in and
out, so ovserve's throughput divided by the floor's says how much of Tornado's budget ovserve's
own work costs.

Tornado's default settings, as the issue defines the floor, except ``--chunk-size`` (the pieces a
body is read in; default Tornado's 64 KiB). ovserve reads bodies in 1 MiB pieces, which saves
it ~45 trips through the loop on a 2.9 MB body; ``make bench BENCH_ARGS=--floor-chunk-size=1048576``
measures against a floor with that setting too (docs/performance.md reports both).

``GET /ready`` answers ``ok`` once the app listens (the harness polls it).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import tornado.web


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


def load_responses(folder: Path) -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("*.bin"))}


async def serve(host: str, port: int, responses: dict[str, bytes], chunk_size: int) -> None:
    server = make_app(responses).listen(port, host, max_body_size=256 * 2**20,
                                        chunk_size=chunk_size)
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
    args = p.parse_args()
    asyncio.run(serve(args.host, args.port, load_responses(args.responses), args.chunk_size))


if __name__ == "__main__":
    main()
