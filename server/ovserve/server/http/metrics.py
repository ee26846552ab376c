"""``GET /metrics``: Prometheus text exposition of the injected registry.

Answers OVMS's ``400 Invalid request URL`` when metrics are not enabled.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .base import BaseHandler


class MetricsHandler(BaseHandler):
    ALLOWED = ("GET",)

    def get(self) -> None:
        registry = self.deps.registry
        if self.deps.metrics is None or registry is None:
            self.send(self.encode_error("Invalid request URL"), 400)
            return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(registry))
