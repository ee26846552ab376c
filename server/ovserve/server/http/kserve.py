"""KServe v2 (Open Inference Protocol) REST handlers, as OVMS serves them.

Routes::

    GET  /v2/health/live                                 200, empty body
    GET  /v2/health/ready                                200 once the initial config is loaded, else 503
                                                         (503 also while draining after SIGTERM)
    GET  /v2                                             server metadata
    GET  /v2/models/{m}[/versions/{v}]                   model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready             200 when that version is AVAILABLE, else 404
    POST /v2/models/{m}[/versions/{v}]/infer             inference (JSON or binary tensor extension)

Wire details (JSON shapes, the binary extension, raw binary requests) are in
:mod:`ovserve.server.codecs.kserve_v2`. Model metadata lists every AVAILABLE version of the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from tornado.httputil import HTTPHeaders

from .. import errors
from ..backend.base import InferTiming
from ..codecs import kserve_v2
from ..images import has_bytes, prepare_inputs
from ..types import State
from .base import (
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
from .tfs import STATUS, check_name, parse_version

API = "KServe"
HEADER_LENGTH = "Inference-Header-Content-Length"


class V2Handler(BaseHandler):
    STATUS: ClassVar[dict[type[errors.ServingError], int]] = STATUS
    API = API

    def encode_error(self, message: str) -> bytes:
        return kserve_v2.encode_error(message)


class LiveHandler(V2Handler):
    def get(self) -> None:
        self.clear_header("Content-Type")
        self.send(b"")


class ReadyHandler(V2Handler):
    def get(self) -> None:
        if self.deps.draining:
            self.send(self.encode_error("Server is shutting down"), 503)
            return
        if not self.deps.manager.ready:
            self.send(self.encode_error("Server is not ready"), 503)
            return
        self.clear_header("Content-Type")
        self.send(b"")


class ServerMetadataHandler(V2Handler):
    def get(self) -> None:
        self.send(kserve_v2.encode_server_metadata(self.deps.server_version))


class ModelMetadataHandler(V2Handler):
    def get(self, name: str, version: str | None) -> None:
        manager = self.deps.manager
        number: int | None = None
        try:
            check_name(name)
            number = parse_version(version)
            served_version, signature = manager.metadata(name, number)
            number = served_version
            # every AVAILABLE version of the model, whichever answered (OVMS, Triton)
            versions = sorted(s.version for s in manager.statuses(name)
                              if s.state == State.AVAILABLE)
            body = kserve_v2.encode_model_metadata(name, versions or [served_version], signature)
        except errors.ServingError as exc:
            self.count("ModelMetadata", name, number, ok=False)
            self.fail(exc)
            return
        self.count("ModelMetadata", name, number, ok=True)
        self.send(body)


class ModelReadyHandler(V2Handler):
    def get(self, name: str, version: str | None) -> None:
        try:
            check_name(name)
            self.deps.manager.metadata(name, parse_version(version))
        except errors.ServingError as exc:
            self.count("ModelReady", name, None, ok=False)
            self.fail(exc)
            return
        self.count("ModelReady", name, None, ok=True)
        self.clear_header("Content-Type")
        self.send(b"")


class InferHandler(BodyHandler, V2Handler):
    """The /infer route for every method but POST: CORS preflight, ``406`` for the others.
    POST is served by :data:`INFER` (:mod:`.direct`), before Tornado's routing."""


async def infer(
    deps: Deps, args: Sequence[str | None], headers: HTTPHeaders, body: bytes | bytearray
) -> Reply:
    """POST /infer: JSON tensors, or the binary tensor data extension."""
    name, version = args
    assert name is not None  # the route's first group always matches
    started = time.perf_counter()
    served_version: int | None = None
    try:
        check_name(name)
        header_length = _header_length(headers.get(HEADER_LENGTH))
        async with deps.manager.use(name, parse_version(version)) as served:
            served_version = served.version
            # Binary tensor data is taken zero-copy: only the JSON part costs decoding time.
            json_size = len(body) if header_length is None else header_length
            if header_length == 0:  # Triton's "raw binary request": the body is the one input
                request = kserve_v2.decode_raw(body, served.accepts, name)
            else:
                request = await run_codec(
                    deps, json_size, kserve_v2.decode_infer, body, header_length, served.accepts
                )
            inputs = await run_codec(
                deps, len(body) if has_bytes(request.inputs) else 0,  # images decode off the loop
                prepare_inputs, request.inputs, served.accepts,
            )
            timing = InferTiming()
            outputs = await served.infer(inputs, timing)
        response, json_length = await run_codec(
            deps, _json_output_bytes(outputs, request), kserve_v2.encode_infer, name,
            served_version, outputs, request,
        )
    except errors.ServingError as exc:
        count_request(deps, API, "ModelInfer", name, served_version, ok=False)
        return error_reply(STATUS, kserve_v2.encode_error, exc, name)
    count_inference(deps, name, served.version, timing)
    count_request(deps, API, "ModelInfer", name, served.version, ok=True, started=started)
    if json_length is None:
        return Reply(200, response)
    return Reply(200, response, (("Content-Type", "application/octet-stream"),
                                 (HEADER_LENGTH, str(json_length))))


def _header_length(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        raise errors.InvalidInput(f"Invalid {HEADER_LENGTH} header value: {value!r}")
    return int(value)


_TARGET = r"/v2/models/([^/]+?)(?:/versions/(\d+))?"

def _json_output_bytes(outputs: dict[str, Any], request: kserve_v2.V2Request) -> int:
    """About how much JSON encoding the response needs (binary outputs are copied as is)."""
    size = 0
    for name, array in outputs.items():
        if not request.binary_outputs.get(name, request.binary_data_output):
            size += array.nbytes
    return size


_INFER = _TARGET + r"/infer"
INFER = Endpoint(_INFER, infer, kserve_v2.encode_error)
"""POST /infer, served by :mod:`.direct`."""

ROUTES = [
    (r"/v2/health/live", LiveHandler),
    (r"/v2/health/ready", ReadyHandler),
    (r"/v2/?", ServerMetadataHandler),
    (_TARGET + r"/ready", ModelReadyHandler),
    (_INFER, InferHandler),
    (_TARGET, ModelMetadataHandler),
]
