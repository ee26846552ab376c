"""The route table's order: inference routes first, without changing which handler any URL gets."""

from __future__ import annotations

from typing import Any

import pytest
import tornado.httputil
import tornado.web

from ovserve.server.http import app, kserve, mindspore, tfs
from ovserve.server.http.base import Deps, InvalidUrlHandler
from ovserve.server.http.metrics import MetricsHandler

URLS = [
    "/v1/models/m:predict",
    "/v1/models/m/versions/2:predict",
    "/v1/models/m/labels/l:classify",
    "/v1/models/m",
    "/v1/models/m/versions/1/metadata",
    "/v1/models/",
    "/v1/config",
    "/v1/config/reload",
    "/v2",
    "/v2/",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/m",
    "/v2/models/m/versions/3",
    "/v2/models/m/ready",
    "/v2/models/m/infer",
    "/v2/models/m/versions/3/infer",
    "/v2/models/infer",
    "/v2/models/ready/infer",
    "/v2/models/infer/ready",
    "/v2/models/a/b/infer",
    "/model/m:predict",
    "/version/1/model/m:predict",
    "/metrics",
    "/nothing/here",
]


class _Conn:
    def set_close_callback(self, callback: Any) -> None:
        pass


def _handler(application: tornado.web.Application, url: str) -> tuple[type, list[Any]]:
    start = tornado.httputil.RequestStartLine("POST", url, "HTTP/1.1")
    headers = tornado.httputil.HTTPHeaders({"Host": "localhost"})
    request = tornado.httputil.HTTPServerRequest(start_line=start, headers=headers, connection=_Conn())
    delegate: Any = application.find_handler(request)
    return delegate.handler_class, delegate.path_args


@pytest.mark.parametrize("url", URLS)
def test_inference_routes_first_change_no_match(url: str) -> None:
    deps = Deps(manager=None)  # type: ignore[arg-type]  # routing never touches the manager
    table = [*tfs.ROUTES, *kserve.ROUTES, *mindspore.ROUTES, (r"/metrics", MetricsHandler)]
    by_dialect = tornado.web.Application(
        [(pattern, handler, {"deps": deps}) for pattern, handler in table]
        + [(r".*", InvalidUrlHandler, {"deps": deps})]
    )
    served = app.make_app(deps)
    assert _handler(served, url) == _handler(by_dialect, url)
    assert [route[1] for route in app.routes(deps)[:2]] == [tfs.PredictHandler, kserve.InferHandler]
