"""MindSpore-Serving-style REST handler: ``POST /model/{name}[/version/{v}]:{method}``.

Every answer is HTTP 200 with a JSON body, as MindSpore Serving sends it; a failure is
``{"error_msg": "<text>"}`` (the texts are in :mod:`ovserve.server.codecs.mindspore`). The
instances of one request are checked one by one, the good ones are stacked into as few
inference calls as the model's batch dimension allows, and the results are split again per
instance; an instance that fails gets its own ``error_msg`` entry.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping

import numpy as np

from .. import errors
from ..backend.base import InferTiming
from ..codecs import mindspore, mindspore_batch
from ..served import ServedModel
from .base import BodyHandler, _simple_error

API = "MindSpore"
METHOD = "Predict"


class MindSporeHandler(BodyHandler):
    """One handler for the whole ``/model/...`` space: MindSpore parses its URL by substring."""

    ALLOWED = ("POST",)
    API = API

    def encode_error(self, message: str) -> bytes:
        return mindspore.encode_error(message)

    def error_status(self, exc: errors.ServingError) -> int:
        return 200  # MindSpore answers every error with HTTP 200 and an error_msg body

    def too_large_message(self) -> str:
        return f"http message is bigger than {self.deps.max_body_bytes}"

    def too_large_status(self) -> int:
        return 200

    def refuse_method(self) -> None:
        self.send(self.encode_error("http message only support POST right now"))

    async def _infer(
        self, served: ServedModel, inputs: dict[str, np.ndarray]
    ) -> Mapping[str, np.ndarray] | str:
        """One inference call; its error text when it fails (only its instances fail)."""
        timing = InferTiming()
        try:
            result = await served.infer(inputs, timing)
        except errors.ServingError as exc:
            return exc.message
        self.count_inference(served.name, served.version, timing)
        return result

    async def post(self) -> None:
        started = time.perf_counter()
        name = ""
        served_version: int | None = None
        try:
            target = mindspore.parse_url(self.request.uri or "")
            name = target.name
            body = self.body
            instances = await self.run_codec(
                len(body), mindspore.decode_instances, body, self.deps.max_body_bytes
            )
            async with contextlib.AsyncExitStack() as stack:
                try:
                    served = await stack.enter_async_context(
                        self.deps.manager.use(target.name, target.version or None)
                    )
                except errors.ServingError:
                    raise errors.InvalidInput(mindspore.servable_unavailable(target)) from None
                served_version = served.version
                mindspore.check_method(target)
                plan = mindspore_batch.batch_instances(
                    instances, served.accepts, servable=target.name, method=target.method
                )
                outputs = [await self._infer(served, batch.inputs) for batch in plan.batches]
            results = mindspore_batch.collect_results(plan, outputs)
            response = await self.run_codec(len(body), mindspore.encode_instances, results)
        except errors.ServingError as exc:
            self.count(METHOD, name, served_version, ok=False)
            self.fail(exc)
            return
        ok = not any(isinstance(r, str) for r in results)
        self.count(METHOD, name, served_version, ok=ok, started=started)
        self.send(response)


class MindSporeUrlHandler(MindSporeHandler):
    """A POST to a bare MindSpore-style method URL (``/x/:add_common``), without the ``model`` key:
    MindSpore's own answer (``please check url, the keyword:[model] must contain.``, HTTP 200).
    Other methods on such URLs keep OVMS's ``400 Invalid request URL``."""

    def refuse_method(self) -> None:
        self.send(self.encode_error("Invalid request URL"), 400)

    def encode_error(self, message: str) -> bytes:
        if self.request.method != "POST":
            return _simple_error(message)
        return mindspore.encode_error(message)


# MindSpore finds its URL keys in any order; the version may come first. A POST to any other
# path whose last segment is only a method (``.../:name``), outside /v1/ and /v2/, is a
# MindSpore-style request without its model key.
ROUTES = [
    (r"/(?:version/[^/]*/)?model/.*", MindSporeHandler),
    (r"/(?!v1/|v2/)(?:[^:]*/)?:[^/]*", MindSporeUrlHandler),
]
