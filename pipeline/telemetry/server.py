"""Serves the own Prometheus metrics at `http://<service.telemetry.metrics.address>/metrics`."""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.auth import Authenticator, Role, Route, RouteTable, http_middleware
from pipeline.httpserver import HttpServer
from pipeline.telemetry import metrics


async def _metrics(_: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


ROUTES = RouteTable([Route("GET", "/metrics", Role.VIEWER)])


class MetricsServer(HttpServer):
    """`/metrics`; with `authenticator_of` giving an authenticator, scraping needs `viewer`
    (`service::telemetry::metrics::auth::authenticator`; 503 while it is not running)."""

    def __init__(self, address: str, authenticator_of: Callable[[], Authenticator | None] = lambda: None) -> None:
        app = web.Application(middlewares=[http_middleware(authenticator_of,
                                                           lambda request: ROUTES.needs(request.method, request.path))])
        app.router.add_get("/metrics", _metrics)
        super().__init__(address, app)
