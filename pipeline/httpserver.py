"""A small aiohttp server on one endpoint: the metrics endpoint and the HTTP extensions share it."""
from __future__ import annotations

from aiohttp import web

from pipeline.netaddr import split_host_port


class HttpServer:
    def __init__(self, endpoint: str, app: web.Application) -> None:
        self.endpoint = endpoint
        self.app = app
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        host, port = split_host_port(self.endpoint)
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
