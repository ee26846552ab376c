"""``GET /metrics``: Prometheus text exposition of the injected registry.

Answers OVMS's ``400 Invalid request URL`` when metrics are not enabled.

The body is the classic text format 0.0.4 (``generate_latest`` with its default escaping), so the
``Content-Type`` says 0.0.4 as OVMS's does. prometheus_client's ``CONTENT_TYPE_LATEST`` is not
used: recent releases (0.26 in this venv) make it text format 1.0.0, which does not describe the
body written here.
"""

from __future__ import annotations

from prometheus_client import generate_latest

from .base import BaseHandler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsHandler(BaseHandler):
    ALLOWED = ("GET",)

    def get(self) -> None:
        registry = self.deps.registry
        if self.deps.metrics is None or registry is None:
            self.send(self.encode_error("Invalid request URL"), 400)
            return
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(generate_latest(registry))
