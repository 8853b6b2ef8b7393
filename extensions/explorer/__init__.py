"""`explorer`: the session explorer, a web UI and its JSON API (default localhost:10207).

It reads the spans and the audit table (trigger events, safety decisions) where the daemon
stores them: the embedded chDB engine of this process (`store: chdb`, read on its own
read-only connection and thread while the `chdb` exporter writes) or a ClickHouse server
(`store: clickhouse`, over HTTP). Its own port, not the debug API's: the debug API routes
whole paths to components, and a UI of static assets plus an API under `/api/` is simpler
served by its own small app (10205 is the default debug API, 10206 config/safety.yaml's).

What it promises:
- reading never blocks ingest for long: every query runs off the event loop on the reader
  thread (chdb) or the HTTP client (clickhouse), never on the writer's connection, with bounded
  settings and a gate that answers 503 rather than queue without bound (store.py);
- a busy ingest loop does not delay the UI: its server runs on an event loop of its own (loop.py);
- reads never write: every read runs with the engine's `readonly` setting; request values
  are bound as parameters, never pasted into SQL. It writes only for an admin: an erasure's
  deletes (forget.py) and the audit table's rows (a SQL query, an erasure, and the debug API's
  actions of this process, pipeline/audit.py), inserted, never updated or deleted;
- who may call which route: api.py's table, through `auth.token` or `auth.authenticator`;
- a store that is down or a table not created yet gives an error (502) or an empty list, and
  the daemon goes on; the UI shows the message;
- every asset ships in the package (extensions/explorer/static/): no CDN, works offline.
API and views: extensions/explorer/api.py. The OpenAPI document of this API and the debug API
is on the debug API: `/debug/docs` (a page) and `/debug/docs/openapi.json`.
"""
from __future__ import annotations

import asyncio
from typing import Callable

from aiohttp import web

from extensions.explorer.api import ExplorerApp
from extensions.explorer.config import ExplorerConfig
from extensions.explorer.forget import AuditSink, ClickHouseWriter, writer_for
from extensions.explorer.loop import LoopThread, OnLoop
from extensions.explorer.openapi import add_routes as add_openapi_routes
from extensions.explorer.store import ChdbReader, ClickHouseReader, Store
from pipeline import audit
from pipeline.auth import Authenticator, StaticToken
from pipeline.component import Component, Factory, Kind, Settings
from pipeline.host import Host
from pipeline.httpserver import HttpServer


def make_store(config: ExplorerConfig) -> Store:
    if config.store == "clickhouse":
        ch = config.clickhouse
        return ClickHouseReader(ch.endpoint, ch.username, ch.password)
    return ChdbReader(config.path)


class Explorer(Component):
    def __init__(self, settings: Settings, config: ExplorerConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.store = make_store(config)
        self.writer = writer_for(config, self.store)
        self.server: HttpServer | None = None
        self.loop: LoopThread | None = None  # the explorer's own event loop (loop.py: why)

    async def start(self, host: Host) -> None:
        auth = self.config.auth
        if auth.required and not (auth.token or auth.authenticator):
            raise ValueError(f"extensions::{self.id}::auth: required is true but neither auth::token nor "
                             "auth::authenticator is set; refusing to serve the explorer without authentication")
        self.loop = LoopThread(f"explorer-{self.id}")
        try:
            await self.loop.run(self.store.start())
            try:
                explorer = ExplorerApp(self.config, self.store, self._authenticator_of(host), self.writer)
                self.server = HttpServer(self.config.endpoint, explorer.app(), self.log)
                await self.loop.run(self.server.start())
            except BaseException:
                await self.loop.run(self.store.close())
                raise
        except BaseException:
            self.loop.close()
            self.loop = None
            raise
        audit.add_sink(str(self.id), AuditSink(self.writer, explorer.tables, self.config.database))
        host_part, _, port = self.config.endpoint.rpartition(":")
        host_part = "localhost" if host_part.strip("[]") in ("", "0.0.0.0", "::") else host_part
        add_openapi_routes(host, f"http://{host_part}:{port}")
        self.log.info("explorer ready", extra={"kv": {"endpoint": self.config.endpoint, "store": self.config.store}})

    def _authenticator_of(self, host: Host) -> Callable[[], Authenticator | None]:
        static = StaticToken(self.config.auth.token, f"{self.id}:token") if self.config.auth.token else None
        name = self.config.auth.authenticator
        daemon_loop = asyncio.get_running_loop()  # where the extension's clients live

        def authenticator() -> Authenticator | None:
            if not name:
                return static
            try:
                return OnLoop(host.authenticator(name), daemon_loop)
            except ValueError as exc:  # fail closed while it is not running
                raise web.HTTPServiceUnavailable(text=str(exc)) from None

        return authenticator

    async def shutdown(self, deadline: float | None = None) -> None:
        audit.remove_sink(str(self.id))
        if self.loop is None:
            return
        if self.server is not None:
            await self.loop.run(self.server.stop())
            self.server = None
        if isinstance(self.writer, ClickHouseWriter):
            await self.loop.run(self.writer.close())
        await self.loop.run(self.store.close())
        self.loop.close()
        self.loop = None


factory = Factory("explorer", Kind.EXTENSION, ExplorerConfig, Explorer,
                  description="session explorer: web UI and JSON API over the stored spans, trigger events and "
                              "safety decisions (chdb in this process, or a ClickHouse server)")
