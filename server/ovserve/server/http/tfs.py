"""TensorFlow-Serving-style v1 REST handlers, as OVMS (<= 2026.2) serves them.

Routes (OVMS's regexes; see :data:`ROUTES`)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]             model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata    model metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict     inference (:classify/:regress -> 404)
    POST /v1/config/reload                                        re-read config.json and version folders
    GET  /v1/config                                               status of every model

Handlers are thin: parse the URL, call the codec and the manager, write the codec's bytes.
Errors become ``{"error": "..."}`` through :data:`STATUS`, OVMS's status table for this API.
The reload and config responses carry ``X-Ovserve-Config-Hash``: the SHA-256 of the config
bytes the server has applied (the operator's handshake relies on it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import ClassVar

from tornado.httputil import HTTPHeaders

from .. import errors
from ..backend.base import InferTiming
from ..codecs import tfs
from ..config import ConfigError
from ..images import has_bytes, prepare_inputs
from ..manager import ConfigFileError
from .base import (
    CONFIG_HASH_HEADER,
    BaseHandler,
    BodyHandler,
    Deps,
    Endpoint,
    Reply,
    count_inference,
    count_request,
    error_reply,
    run_codec,
)

log = logging.getLogger("ovserve.server.http")
API = "TensorFlowServing"
INT64_MAX = 2**63 - 1

STATUS: dict[type[errors.ServingError], int] = {
    errors.ModelNotFound: 404,
    errors.VersionNotFound: 404,
    errors.ModelNotLoadedYet: 404,
    errors.ModelRetired: 404,
    errors.InvalidInput: 400,
    errors.InvalidJson: 412,
    errors.RequestTooLarge: 413,
    errors.UnsupportedFeature: 501,
    errors.ServerNotReady: 503,
    errors.InferenceFailed: 500,
    errors.ModelLoadError: 500,
}


def parse_version(text: str | None) -> int | None:
    """``None``/``0`` mean the default version; beyond int64 the version cannot exist."""
    if not text:
        return None
    value = int(text)
    if value > INT64_MAX:
        raise errors.VersionNotFound()
    return value or None


def check_name(name: str) -> None:
    if ".." in name:
        raise errors.InvalidInput("The provided base path is invalid or doesn't exists")


class TfsHandler(BaseHandler):
    STATUS: ClassVar[dict[type[errors.ServingError], int]] = STATUS
    API = API

    def encode_error(self, message: str) -> bytes:
        return tfs.encode_error(message)


class ModelStatusHandler(TfsHandler):
    """GET status or metadata of a model (all versions, or one)."""

    ALLOWED = ("GET",)

    def get(self, name: str, version: str | None, label: str | None, metadata: str | None) -> None:
        method = "GetModelMetadata" if metadata else "GetModelStatus"
        manager = self.deps.manager
        version_number: int | None = None
        try:
            check_name(name)
            version_number = parse_version(version)
            if metadata:
                served_version, signature = manager.metadata(name, version_number)
                version_number = served_version
                body = tfs.encode_metadata(name, served_version, signature)
            else:
                body = tfs.encode_status(manager.statuses(name, version_number))
        except errors.ServingError as exc:
            self.count(method, name, version_number, ok=False)
            self.fail(exc)
            return
        self.count(method, name, version_number, ok=True)
        self.send(body)


class ModelListHandler(TfsHandler):
    """``GET /v1/models`` carries no model name; OVMS answers model-not-found."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        self.fail(errors.ModelNotFound())


class PredictHandler(BodyHandler, TfsHandler):
    """The :predict route for every method but POST: CORS preflight, ``406`` for the others.
    POST is served by :data:`PREDICT` (:mod:`.direct`), before Tornado's routing."""


async def predict(
    deps: Deps, args: Sequence[str | None], headers: HTTPHeaders, body: bytes | bytearray
) -> Reply:
    """POST :predict in row (``instances``) or column (``inputs``) form."""
    name, version, _label, verb = args
    assert name is not None  # the route's first group always matches
    if verb != "predict":
        return Reply(404, tfs.encode_error("Requested REST resource not found"))
    started = time.perf_counter()
    served_version: int | None = None
    try:
        check_name(name)
        async with deps.manager.use(name, parse_version(version)) as served:
            served_version = served.version
            request = await run_codec(deps, len(body), tfs.decode_predict, body, served.accepts)
            inputs = await run_codec(
                deps, len(body) if has_bytes(request.inputs) else 0,  # images decode off the loop
                prepare_inputs, request.inputs, served.accepts,
            )
            timing = InferTiming()
            outputs = await served.infer(inputs, timing)
        response = await run_codec(deps, len(body), tfs.encode_predict, outputs, request.row)
    except errors.ServingError as exc:
        count_request(deps, API, "Predict", name, served_version, ok=False)
        return error_reply(STATUS, tfs.encode_error, exc, name)
    count_inference(deps, name, served.version, timing)
    count_request(deps, API, "Predict", name, served.version, ok=True, started=started)
    return Reply(200, response)


class ConfigReloadHandler(BodyHandler, TfsHandler):
    """POST /v1/config/reload: 201 when something changed, 200 when nothing did; 400 when a new
    config was applied but some of its entries failed (the others serve)."""

    def encode_error(self, message: str) -> bytes:
        return tfs.encode_reload_error(message)

    async def post(self) -> None:
        manager = self.deps.manager
        metrics = self.deps.metrics
        try:
            report = await manager.reload()
        except ConfigFileError:
            self._failed("Config file not found or cannot open.", 500)
            return
        except ConfigError as exc:
            self._failed(f"Reloading config file failed. Check server logs for more info. - {exc}", 412)
            return
        except Exception:  # a bug or an I/O failure while applying versions
            log.exception("Reloading models versions failed")
            self._failed("Reloading models versions failed. Check server logs for more info.", 500)
            return
        if report.failures:
            # OVMS: an entry that fails (missing base path, unreadable storage, a load error)
            # fails the reload, while the rest of the new config is applied and keeps serving.
            for failure in report.failures:
                log.error("Reloading config file: %s", failure)
            self._failed("Reloading config file failed. Check server logs for more info. - "
                         + "; ".join(report.failures), 400)
            return
        if metrics is not None:
            metrics.observe_reload(ok=True)
        self._hash_header()
        self.send(tfs.encode_config_status(manager.all_statuses()), 201 if report.changed else 200)

    def _failed(self, message: str, status: int) -> None:
        if self.deps.metrics is not None:
            self.deps.metrics.observe_reload(ok=False)
        self._hash_header()
        self.send(self.encode_error(message), status)

    def _hash_header(self) -> None:
        digest = self.deps.manager.config_hash
        if digest:
            self.set_header(CONFIG_HASH_HEADER, digest)


class ConfigStatusHandler(TfsHandler):
    """GET /v1/config: every model's version statuses."""

    ALLOWED = ("GET",)

    def get(self) -> None:
        manager = self.deps.manager
        digest = manager.config_hash
        if digest:
            self.set_header(CONFIG_HASH_HEADER, digest)
        self.send(tfs.encode_config_status(manager.all_statuses()))


_TARGET = r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/(\w+))?"
_PREDICT = _TARGET + r":(predict|classify|regress)"
PREDICT = Endpoint(_PREDICT, predict, tfs.encode_error)
"""POST :predict, served by :mod:`.direct`."""

ROUTES = [
    (_PREDICT, PredictHandler),
    (_TARGET + r"(/metadata)?", ModelStatusHandler),
    (r"/v1/models/?", ModelListHandler),
    (r"/v1/config/reload", ConfigReloadHandler),
    (r"/v1/config", ConfigStatusHandler),
]
