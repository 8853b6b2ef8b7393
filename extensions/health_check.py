"""`health_check`: otelcol-compatible health endpoint (default localhost:13133, path `/`),
with per-pipeline and per-component status as otelcol's health check v2 reports it.

- `GET <path>` answers 200 `{"status":"Server available","upSince":...,"uptime":...,
  "components":{"pipeline:traces":{"healthy":true,"status":"StatusOK",...}}}` while the
  pipelines run and are healthy, and 503 `{"status":"Server not available",...}` while
  starting, shutting down, or when a component is unhealthy by `component_health`.
  `?verbose` adds every component of each pipeline.
- `GET <status_path>` (default `/status`) is health check v2's body: `healthy`, `status`
  (StatusOK, StatusRecoverableError, StatusPermanentError ...), `error`, `status_time`;
  `?verbose` adds pipelines and their components (an error with its last message and when
  it happened, `status_time` being when the current run of errors began);
  `?pipeline=<name>` gives one pipeline.
- `component_health` (otelcol's keys) says when the process counts as unhealthy: a
  permanent error at once (`include_permanent_errors`), a recoverable one (an exporter
  whose destination is failing and is being retried) once it has lasted
  `recovery_duration` (`include_recoverable_errors`). It is healthy again as soon as the
  component reports StatusOK (the exporter's next send succeeds).
- `auth.authenticator` (an oidc or bearertokenauth extension) makes both paths need the
  `viewer` role (401/403 otherwise, 503 while the authenticator is not running); a path listed
  in `auth.public` (say `/`, for a load balancer's liveness probe) stays open. Without an
  authenticator (the default, so `make run` and probes stay simple) both are open.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field, model_validator

from pipeline import status
from pipeline.auth import PUBLIC, Authenticator, Needs, Role, Route, RouteTable, http_middleware
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.config.units import Duration
from pipeline.host import Host
from pipeline.httpserver import HttpServer
from pipeline.netaddr import Endpoint


class ComponentHealthConfig(StrictConfig):
    # otelcol's health check v2 defaults both to false; here an exporter failing for
    # `recovery_duration` does make the daemon unhealthy, which is what the endpoint is for.
    include_permanent_errors: bool = True
    include_recoverable_errors: bool = True
    recovery_duration: Duration = 300.0

    def rule(self) -> status.HealthRule:
        return status.HealthRule(self.include_permanent_errors, self.include_recoverable_errors,
                                 self.recovery_duration)


class HealthAuthConfig(StrictConfig):
    authenticator: str = ""  # an oidc or bearertokenauth extension; both paths then need `viewer`
    public: list[str] = Field(default_factory=list)  # paths answered without credentials (liveness)


class HealthCheckConfig(StrictConfig):
    endpoint: Endpoint = "localhost:13133"
    path: str = "/"
    status_path: str = "/status"
    component_health: ComponentHealthConfig = ComponentHealthConfig()
    auth: HealthAuthConfig = HealthAuthConfig()

    @model_validator(mode="after")
    def _public_paths_are_served(self) -> "HealthCheckConfig":
        unknown = [path for path in self.auth.public if path not in (self.path, self.status_path)]
        if unknown:
            raise ValueError(f"auth::public {unknown} must name path {self.path!r} or status_path "
                             f"{self.status_path!r}")
        return self

    def routes(self) -> RouteTable:
        """The role of each route: `viewer`, or public when listed in `auth.public`."""
        return RouteTable(Route("GET", path, PUBLIC if path in self.auth.public else Role.VIEWER)
                          for path in dict.fromkeys([self.path, self.status_path]) if path)


def _verbose(request: web.Request) -> bool:
    return "verbose" in request.query and request.query["verbose"].lower() not in ("0", "false")


class HealthCheck(Component):
    def __init__(self, settings: Settings, config: HealthCheckConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.rule = config.component_health.rule()
        self.table = config.routes()
        self.registry = status.registry
        self.server: HttpServer | None = None

    def app(self, host: Host) -> web.Application:
        app = web.Application(middlewares=[http_middleware(lambda: self._authenticator(host), self._needs)])
        app.router.add_get(self.config.path, lambda request: self._health(host, request))
        if self.config.status_path and self.config.status_path != self.config.path:
            app.router.add_get(self.config.status_path, lambda request: self._status(host, request))
        return app

    async def start(self, host: Host) -> None:
        self.server = HttpServer(self.config.endpoint, self.app(host))
        await self.server.start()

    async def shutdown(self, deadline: float | None = None) -> None:
        if self.server:
            await self.server.stop()

    def _needs(self, request: web.Request) -> Needs:
        return self.table.needs(request.method, request.path)

    def _authenticator(self, host: Host) -> Authenticator | None:
        if not self.config.auth.authenticator:
            return None
        try:
            return host.authenticator(self.config.auth.authenticator)
        except ValueError as exc:  # fail closed while it is not running
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

    def _healthy(self, host: Host) -> bool:
        return host.ready and self.registry.healthy(self.rule)

    async def _health(self, host: Host, request: web.Request) -> web.Response:
        healthy = self._healthy(host)
        body: dict[str, Any] = status.health_body(host)
        if host.ready and not healthy:
            body["status"] = "Server not available"
        body["components"] = self.registry.report(self.rule, verbose=_verbose(request))["components"]
        return web.json_response(body, status=200 if healthy else 503)

    async def _status(self, host: Host, request: web.Request) -> web.Response:
        pipeline = request.query.get("pipeline")
        if pipeline is not None and pipeline not in self.registry.pipelines:
            raise web.HTTPNotFound(text=f"no pipeline {pipeline!r}; known: {', '.join(self.registry.pipelines)}")
        report = self.registry.report(self.rule, verbose=True, pipeline=pipeline)
        if pipeline is None and not _verbose(request):
            report.pop("components")
        healthy = report["healthy"] and (host.ready or pipeline is not None)
        return web.json_response(report, status=200 if healthy else 503)


factory = Factory("health_check", Kind.EXTENSION, HealthCheckConfig, HealthCheck,
                  description="otelcol-compatible health endpoint with per-pipeline component status")
