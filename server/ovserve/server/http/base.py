"""Shared Tornado plumbing: dependencies, method checks, CORS, body limits, error writing.

Every handler of every dialect derives from :class:`BaseHandler` (GET-style) or
:class:`BodyHandler` (POST with a streamed, size-limited body). A handler declares the methods it
allows in ``ALLOWED``; any other standard method gets OVMS's ``406 Unsupported method``.
Each dialect supplies ``STATUS`` (its one domain-error -> HTTP-status table) and
``encode_error``; :meth:`BaseHandler.fail` is the only place an error becomes a response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, TypeVar

import tornado.httputil
import tornado.web
from prometheus_client import CollectorRegistry

from .. import errors
from ..backend.base import InferTiming
from ..manager import ModelManager
from ..metrics import ServerMetrics

log = logging.getLogger("ovserve.server.http")
T = TypeVar("T")

CONFIG_HASH_HEADER = "X-Ovserve-Config-Hash"
JSON = "application/json"


@dataclass(frozen=True)
class Cors:
    """OVMS's CORS flags; ``None`` in :class:`Deps` disables the headers entirely."""

    allowed_origins: str = "*"
    allowed_methods: str = "*"
    allowed_headers: str = "*"
    allow_credentials: bool = False


class InFlight:
    """Counts HTTP requests being handled, so shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0

    async def drain(self, timeout: float = 30.0, quiet: float = 0.2) -> bool:
        """Wait until no request has been in flight for ``quiet`` seconds; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        idle_since: float | None = None
        while loop.time() < deadline:
            if self.count:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since >= quiet:
                return True
            await asyncio.sleep(0.02)
        return False


@dataclass
class Deps:
    """Everything a handler needs, injected through ``initialize`` (no globals)."""

    manager: ModelManager
    metrics: ServerMetrics | None = None
    registry: CollectorRegistry | None = None
    max_body_bytes: int = 100 * 1024 * 1024
    cors: Cors | None = field(default_factory=Cors)
    # Codec work on large bodies runs here so the event loop keeps serving small requests.
    codec_executor: Executor | None = None
    large_body_bytes: int = 256 * 1024
    server_version: str = ""
    inflight: InFlight = field(default_factory=InFlight)
    # Set on SIGTERM (cli.serve): /v2/health/ready answers 503 while the server drains.
    draining: bool = False


def _simple_error(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


# ---------------------------------------------------------------------- shared by both front ends
# The inference exchanges (tfs.predict, kserve.infer) run without a RequestHandler (direct.py);
# these helpers are what they and the handlers have in common.


class Reply(NamedTuple):
    """A response an exchange produced: status, body and the headers beyond the common ones
    (``Content-Type`` defaults to JSON)."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """A POST route served straight off the HTTP connection (:mod:`.direct`).

    ``pattern`` is Tornado's route regex (the same one the dialect's handler is routed by, for
    the other methods); ``serve(deps, path_args, headers, body)`` produces the reply;
    ``encode_error`` writes the dialect's error body for what the router itself refuses."""

    pattern: str
    serve: Callable[
        [Deps, Sequence[str | None], tornado.httputil.HTTPHeaders, bytes | bytearray],
        Awaitable[Reply],
    ]
    encode_error: Callable[[str], bytes]


def status_for(table: Mapping[type[errors.ServingError], int], exc: errors.ServingError) -> int:
    """The HTTP status of a domain error in a dialect's table (by class, most derived first)."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def count_request(deps: Deps, api: str, method: str, name: str, version: int | None, ok: bool,
                  started: float | None = None) -> None:
    """Count one request; ``started`` (inference requests that succeeded) feeds
    ``ovms_request_time_us``."""
    metrics = deps.metrics
    if metrics is not None:
        duration = (time.perf_counter() - started) * 1e6 if ok and started else None
        metrics.observe_request(api=api, method=method, name=name, version=version, ok=ok,
                                duration_us=duration)


def count_inference(deps: Deps, name: str, version: int, timing: InferTiming) -> None:
    metrics = deps.metrics
    if metrics is not None:
        metrics.observe_inference(name=name, version=version, infer_us=timing.infer_us,
                                  wait_us=timing.wait_us)


def error_reply(table: Mapping[type[errors.ServingError], int], encode_error: Callable[[str], bytes],
                exc: errors.ServingError, name: str) -> Reply:
    """A domain error of an inference of model ``name`` as a dialect answers it (``table``,
    ``encode_error``); logged when the server is at fault (5xx)."""
    status = status_for(table, exc)
    if status >= 500:
        log.error("Inference of %s failed: %s", name, exc)
    return Reply(status, encode_error(exc.message))


async def run_codec(deps: Deps, size: int, func: Callable[..., T], *args: Any) -> T:
    """Run codec work inline, or in the codec executor when ``size`` bytes make it slow."""
    executor = deps.codec_executor
    if executor is None or size < deps.large_body_bytes:
        return func(*args)
    return await asyncio.get_running_loop().run_in_executor(executor, func, *args)


def open_body(connection: Any, content_length: str | None) -> int:
    """Lift the connection's body limit (the HTTP server's ``max_body_size``, the same number)
    for a body whose caller enforces the limit with its dialect's error (the connection would
    answer a bare ``413``); return the declared length (0 when there is none)."""
    set_limit = getattr(connection, "set_max_body_size", None)
    if set_limit is not None:  # before the body is read
        set_limit(sys.maxsize)
    return int(content_length) if content_length is not None and content_length.isdigit() else 0


def too_large_message(limit: int) -> str:
    """TFS and KServe v2's text for a body over ``--max_request_mb``."""
    return f"Request body is larger than the limit of {limit} bytes"


class BaseHandler(tornado.web.RequestHandler):
    """Common behaviour; subclasses set ``ALLOWED``, ``STATUS`` and ``encode_error``."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")
    ALLOWED: ClassVar[tuple[str, ...]] = ("GET",)
    STATUS: ClassVar[Mapping[type[errors.ServingError], int]] = {}
    API: ClassVar[str] = ""  # the metrics' ``api`` label of the dialect
    deps: Deps

    _counted = False

    def initialize(self, deps: Deps) -> None:
        self.deps = deps
        deps.inflight.count += 1
        self._counted = True
        # Tornado sets default headers before ``initialize`` runs, when ``deps`` is not yet known.
        self._set_cors_headers()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.deps.inflight.count -= 1

    def on_finish(self) -> None:
        self._uncount()

    def on_connection_close(self) -> None:
        self._uncount()
        super().on_connection_close()

    # ------------------------------------------------------------------ protocol hooks

    def encode_error(self, message: str) -> bytes:
        return _simple_error(message)

    def error_status(self, exc: errors.ServingError) -> int:
        return status_for(self.STATUS, exc)

    # ------------------------------------------------------------------ responses

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", JSON)
        if hasattr(self, "deps"):  # again after clear(), e.g. in write_error
            self._set_cors_headers()

    def _set_cors_headers(self) -> None:
        cors = self.deps.cors
        if cors is not None:
            self.set_header("Access-Control-Allow-Origin", cors.allowed_origins)
            if cors.allow_credentials:
                self.set_header("Access-Control-Allow-Credentials", "true")

    def send(self, body: bytes, status: int = 200) -> None:
        self.set_status(status)
        self.finish(body)

    def fail(self, exc: errors.ServingError) -> None:
        status = self.error_status(exc)
        if status >= 500:
            log.error("%s %s failed: %s", self.request.method, self.request.path, exc)
        self.send(self.encode_error(exc.message), status)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Reached only for exceptions a handler did not turn into a ServingError (bugs) and for
        # Tornado's own errors (405 on unknown methods); never leak a traceback to clients.
        message = "Internal server error" if status_code >= 500 else self._reason
        self.set_header("Content-Type", JSON)
        self.finish(self.encode_error(message))

    # ------------------------------------------------------------------ metrics

    def count(
        self, method: str, name: str, version: int | None, ok: bool, started: float | None = None
    ) -> None:
        """Count one request of this dialect (:func:`count_request`)."""
        count_request(self.deps, self.API, method, name, version, ok, started)

    def count_inference(self, name: str, version: int, timing: InferTiming) -> None:
        count_inference(self.deps, name, version, timing)

    # ------------------------------------------------------------------ method checks, CORS

    def prepare(self) -> None:
        if not self.method_allowed():
            self.refuse_method()

    def method_allowed(self) -> bool:
        """``OPTIONS`` (CORS preflight) or one of ``ALLOWED``."""
        method = self.request.method
        return method == "OPTIONS" or method in self.ALLOWED

    def refuse_method(self) -> None:
        """Answer a method the route does not allow (OVMS: ``406 Unsupported method``)."""
        self.send(self.encode_error("Unsupported method"), 406)

    def options(self, *args: str) -> None:
        cors = self.deps.cors
        if cors is None:
            self.send(self.encode_error("Unsupported method"), 406)
            return
        self.set_header("Access-Control-Allow-Methods", cors.allowed_methods)
        self.set_header("Access-Control-Allow-Headers", cors.allowed_headers)
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()

    async def run_codec(self, size: int, func: Callable[..., T], *args: Any) -> T:
        """Run codec work inline, or in the codec executor when ``size`` bytes make it slow."""
        return await run_codec(self.deps, size, func, *args)


@tornado.web.stream_request_body
class BodyHandler(BaseHandler):
    """A POST handler whose body is streamed and refused early when above the size limit.

    A ``Content-Length`` above ``max_body_bytes`` is refused as soon as the headers arrive; a
    body without one (chunked) is refused by the piece that crosses the limit. Either way the
    dialect's own error is sent at once, with ``Connection: close``, and the connection closes
    once that answer is written, without reading the rest of the body.

    The connection's own limit is lifted for these requests (:func:`open_body`).
    """

    ALLOWED = ("POST",)
    _chunks: list[bytes]
    _size: int
    _too_large: bool

    def too_large_message(self) -> str:
        return too_large_message(self.deps.max_body_bytes)

    def too_large_status(self) -> int:
        return 413

    def prepare(self) -> None:
        self._chunks = []
        self._size = 0
        self._too_large = False
        if not self.method_allowed():  # BaseHandler.prepare's check, plus a header:
            # this answer goes out before the body is read, and the connection then closes:
            # say so, or a keep-alive client reuses a dead connection.
            self.set_header("Connection", "close")
            self.refuse_method()
            return
        size = open_body(self.request.connection, self.request.headers.get("Content-Length"))
        if size > self.deps.max_body_bytes:
            self._refuse_too_large()

    def _refuse_too_large(self) -> None:
        self._too_large = True
        self.set_header("Connection", "close")
        self.send(self.encode_error(self.too_large_message()), self.too_large_status())

    def data_received(self, chunk: bytes) -> None:
        if self._too_large or self._finished:
            return
        self._size += len(chunk)
        if self._size > self.deps.max_body_bytes:
            self._chunks.clear()
            self._refuse_too_large()
            return
        self._chunks.append(chunk)

    @property
    def body(self) -> bytes:
        chunks = self._chunks
        if len(chunks) == 1:
            return chunks[0]
        data = b"".join(chunks)
        self._chunks = [data]
        return data


class InvalidUrlHandler(BaseHandler):
    """Every URL no route matched: OVMS answers 400 ``Invalid request URL`` for any method."""

    ALLOWED = BaseHandler.SUPPORTED_METHODS

    def prepare(self) -> None:
        if self.request.method == "OPTIONS" and self.deps.cors is not None:
            return
        self.send(self.encode_error("Invalid request URL"), 400)
