"""The route table and the Tornado application, built from injected dependencies.

One application serves every dialect on one port: TF-Serving v1 (:mod:`.tfs`), KServe v2
(:mod:`.kserve`), MindSpore-style (:mod:`.mindspore`) and ``/metrics``. Anything no route
matches gets OVMS's ``400 Invalid request URL``. Called by :mod:`ovserve.server.cli`.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from . import kserve, mindspore, tfs
from .base import Deps, InvalidUrlHandler
from .metrics import MetricsHandler


def routes(deps: Deps) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    table: list[tuple[str, type[tornado.web.RequestHandler]]] = [
        *tfs.ROUTES,
        *kserve.ROUTES,
        *mindspore.ROUTES,
        (r"/metrics", MetricsHandler),
    ]
    # Inference routes first: Tornado tries the rules in order, each miss costs a regex match,
    # and these requests are the ones that need speed (a v2 inference passed 9 rules, ~4 us).
    # The order changes no match: the dialects' URL spaces (/v1/, /v2/, /model/) are disjoint,
    # and no URL an inference route matches is matched by a route of its dialect that it passes.
    table.sort(key=lambda route: route[1] not in (tfs.PredictHandler, kserve.InferHandler))
    args = {"deps": deps}
    return [(pattern, handler, args) for pattern, handler in table] + [
        (r".*", InvalidUrlHandler, args)
    ]


def make_app(deps: Deps) -> tornado.web.Application:
    return tornado.web.Application(
        routes(deps),
        default_handler_class=InvalidUrlHandler,
        default_handler_args={"deps": deps},
        compress_response=False,
        xheaders=False,
    )
