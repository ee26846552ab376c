"""KServe v2 (Open Inference Protocol) REST handlers, as OVMS serves them.

Routes::

    GET  /v2/health/live                                 200, empty body
    GET  /v2/health/ready                                200 once the initial config is loaded, else 503
    GET  /v2                                             server metadata
    GET  /v2/models/{m}[/versions/{v}]                   model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready             200 when that version is AVAILABLE, else 404
    POST /v2/models/{m}[/versions/{v}]/infer             inference (JSON or binary tensor extension)

Wire details (JSON shapes, the binary extension) are in :mod:`ovserve.server.codecs.kserve_v2`.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from .. import errors
from ..backend.base import InferTiming
from ..codecs import kserve_v2
from ..images import has_bytes, prepare_inputs
from .base import BaseHandler, BodyHandler
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
            # OVMS lists only the version that answered (``add_versions(instance->getVersion())``)
            body = kserve_v2.encode_model_metadata(name, [served_version], signature)
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
    async def post(self, name: str, version: str | None) -> None:
        started = time.perf_counter()
        served_version: int | None = None
        try:
            check_name(name)
            header = self.request.headers.get(HEADER_LENGTH)
            header_length = _header_length(header)
            body = self.body
            async with self.deps.manager.use(name, parse_version(version)) as served:
                served_version = served.version
                # Binary tensor data is taken zero-copy: only the JSON part costs decoding time.
                json_size = len(body) if header_length is None else header_length
                request = await self.run_codec(
                    json_size, kserve_v2.decode_infer, body, header_length, served.signature
                )
                inputs = await self.run_codec(
                    len(body) if has_bytes(request.inputs) else 0,  # images decode off the loop
                    prepare_inputs, request.inputs, served.signature,
                )
                timing = InferTiming()
                outputs = await served.infer(inputs, timing)
            response, json_length = await self.run_codec(
                _json_output_bytes(outputs, request), kserve_v2.encode_infer, name,
                served_version, outputs, request,
            )
        except errors.ServingError as exc:
            self.count("ModelInfer", name, served_version, ok=False)
            self.fail(exc)
            return
        if json_length is not None:
            self.set_header(HEADER_LENGTH, str(json_length))
            self.set_header("Content-Type", "application/octet-stream")
        self.send(response)
        self.count_inference(name, served.version, timing)
        self.count("ModelInfer", name, served.version, ok=True, started=started)


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


ROUTES = [
    (r"/v2/health/live", LiveHandler),
    (r"/v2/health/ready", ReadyHandler),
    (r"/v2/?", ServerMetadataHandler),
    (_TARGET + r"/ready", ModelReadyHandler),
    (_TARGET + r"/infer", InferHandler),
    (_TARGET, ModelMetadataHandler),
]
