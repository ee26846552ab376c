"""The route table and the Tornado application, built from injected dependencies.

One server serves every dialect on one port: TF-Serving v1 (:mod:`.tfs`), KServe v2
(:mod:`.kserve`), MindSpore-style (:mod:`.mindspore`) and ``/metrics``. Anything no route
matches gets OVMS's ``400 Invalid request URL``. The two inference POST routes are served in
front of the application by :mod:`.direct`. Called by :mod:`ovserve.server.cli`.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from . import kserve, mindspore, tfs
from .base import Deps, InvalidUrlHandler
from .direct import Router
from .metrics import MetricsHandler


def routes(deps: Deps) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    table: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        *tfs.ROUTES,
        *kserve.ROUTES,
        *mindspore.ROUTES,
        (r"/metrics", MetricsHandler),
    ]
    args = {"deps": deps}
    return [(pattern, handler, args) for pattern, handler in table] + [
        (r".*", InvalidUrlHandler, args)
    ]


ENDPOINTS = (tfs.PREDICT, kserve.INFER)
"""The POST routes served without a RequestHandler (:mod:`.direct`)."""


def make_application(deps: Deps) -> tornado.web.Application:
    return tornado.web.Application(
        routes(deps),
        default_handler_class=InvalidUrlHandler,
        default_handler_args={"deps": deps},
        compress_response=False,
        xheaders=False,
    )


def make_app(deps: Deps) -> Router:
    """What the HTTP server serves: the inference endpoints, then the application."""
    return Router(make_application(deps), deps, ENDPOINTS)
