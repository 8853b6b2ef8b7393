"""`health_check`: otelcol-compatible health endpoint (default 0.0.0.0:13133, path `/`).

Answers 200 `{"status":"Server available","upSince":...,"uptime":...}` while the pipelines
run, 503 `{"status":"Server not available",...}` while starting or shutting down.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from aiohttp import web

from pipeline.httpserver import HttpServer
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.host import Host
from pipeline.netaddr import Endpoint


class HealthCheckConfig(StrictConfig):
    endpoint: Endpoint = "localhost:13133"
    path: str = "/"


def health_body(host: Host) -> dict[str, str]:
    up_since = datetime.fromtimestamp(host.started_at, timezone.utc).isoformat().replace("+00:00", "Z")
    return {"status": host.status, "upSince": up_since, "uptime": f"{time.time() - host.started_at:.3f}s"}


class HealthCheck(Component):
    def __init__(self, settings: Settings, config: HealthCheckConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.server: HttpServer | None = None

    async def start(self, host: Host) -> None:
        async def health(_: web.Request) -> web.Response:
            return web.json_response(health_body(host), status=200 if host.ready else 503)

        app = web.Application()
        app.router.add_get(self.config.path, health)
        self.server = HttpServer(self.config.endpoint, app)
        await self.server.start()

    async def shutdown(self, deadline: float | None = None) -> None:
        if self.server:
            await self.server.stop()


factory = Factory("health_check", Kind.EXTENSION, HealthCheckConfig, HealthCheck,
                  description="otelcol-compatible health endpoint")
