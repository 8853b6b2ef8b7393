"""Serves the own Prometheus metrics at `http://<service.telemetry.metrics.address>/metrics`."""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.httpserver import HttpServer
from pipeline.telemetry import metrics


async def _metrics(_: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class MetricsServer(HttpServer):
    def __init__(self, address: str) -> None:
        app = web.Application()
        app.router.add_get("/metrics", _metrics)
        super().__init__(address, app)
