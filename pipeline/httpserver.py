"""A small aiohttp server on one endpoint: the metrics endpoint and the HTTP extensions share it.

`start` raises `BindError` (one line: the endpoint and why) when it cannot listen, e.g. the
port is taken; nothing is left half-open.
"""
from __future__ import annotations

import logging

from aiohttp import web

from pipeline.netaddr import BindError, bind_reason, split_host_port
from pipeline.telemetry.logs import ServerLog

_aiohttp_log = logging.getLogger("aiohttp.server")


class HttpServer:
    def __init__(self, endpoint: str, app: web.Application, logger: logging.Logger | None = None) -> None:
        self.endpoint = endpoint
        self.app = app
        self.logger = logger
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        logger = ServerLog(self.logger or _aiohttp_log, self.endpoint)
        self._runner = web.AppRunner(self.app, access_log=None, logger=logger)
        await self._runner.setup()
        host, port = split_host_port(self.endpoint)
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as exc:
            await self.stop()
            raise BindError(self.endpoint, bind_reason(exc)) from None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
