"""Which requests the direct router (http/direct.py) serves: exactly the POSTs that Tornado's routing
would give the inference handlers, with the same path arguments."""

from __future__ import annotations

from typing import Any

import pytest
import tornado.httputil
import tornado.web

from ovserve.server.http import app, kserve, mindspore, tfs
from ovserve.server.http.base import Deps, InvalidUrlHandler
from ovserve.server.http.direct import Router
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
    "/v1/models/my%20model:predict",
    "/v1/models/caf%C3%A9/versions/7:predict",
    "/v2/models/a%2Fb/infer",
    "/v1/models/m:predict?debug=1",
    "/v2/models/m/versions/2/infer?x=%ff",
    "/v1/models/m:predictx",
    "/v2/models/m/inference",
]


class _Conn:
    def set_close_callback(self, callback: Any) -> None:
        pass


def _tornado_route(application: tornado.web.Application, url: str) -> tuple[type, list[Any]]:
    """The handler Tornado's routing picks for a POST to ``url``, and the path arguments as the
    handler's ``post`` would receive them."""
    start = tornado.httputil.RequestStartLine("POST", url, "HTTP/1.1")
    headers = tornado.httputil.HTTPHeaders({"Host": "localhost"})
    request = tornado.httputil.HTTPServerRequest(start_line=start, headers=headers, connection=_Conn())
    delegate: Any = application.find_handler(request)
    args = [None if a is None else a.decode("utf-8") for a in delegate.path_args]
    return delegate.handler_class, args


@pytest.fixture(scope="module")
def router() -> Router:
    return app.make_app(Deps(manager=None))  # type: ignore[arg-type]  # routing only


@pytest.mark.parametrize("url", URLS)
def test_router_serves_exactly_the_inference_posts(router: Router, url: str) -> None:
    handler, args = _tornado_route(router.application, url)
    found = router.match(url)
    if handler is tfs.PredictHandler:
        assert found is not None and found[0] is tfs.PREDICT
    elif handler is kserve.InferHandler:
        assert found is not None and found[0] is kserve.INFER
    else:
        assert found is None
        return
    assert found[1] == args


def test_path_arguments_are_unquoted_as_tornado_does(router: Router) -> None:
    assert router.match("/v1/models/my%20model:predict") == (
        tfs.PREDICT, ["my model", None, None, "predict"])
    assert router.match("/v2/models/caf%C3%A9/versions/3/infer?a=b") == (kserve.INFER, ["café", "3"])
    assert router.match("/v1/models/plus+sign:predict") == (
        tfs.PREDICT, ["plus+sign", None, None, "predict"])


def test_path_argument_that_is_not_utf8_is_reported(router: Router) -> None:
    assert router.match("/v2/models/%ff/infer") == (kserve.INFER, None)


def test_route_table_keeps_a_handler_for_the_other_methods() -> None:
    handlers = {handler for _, handler, _ in app.routes(Deps(manager=None))}  # type: ignore[arg-type]
    assert {tfs.PredictHandler, kserve.InferHandler, mindspore.MindSporeHandler,
            MetricsHandler, InvalidUrlHandler} <= handlers
