"""`debug_api`: the daemon's own HTTP API (default localhost:10205).

`/debug/health` (status and uptime), `/debug/pipelines` (the running graph) and every
route components add through the host (`/debug/<name>`). With `auth.token` set, every
request must carry `Authorization: Bearer <token>` (401 otherwise).

A POST to `/debug/<name>/...` is an admin action (reset a breaker, lift a throttle), handled
by the component that serves `/debug/<name>`. Admin actions change what the daemon does, so
they are refused (403) unless `auth.token` or `auth.authenticator` is set. With
`auth.authenticator` (an oidc or bearertokenauth extension) a read needs the `viewer` role and
an action `operator`: 401 with WWW-Authenticate without valid credentials, 403 for a weaker role.
"""
from __future__ import annotations

import hmac
from aiohttp import web
from pydantic import model_validator

from extensions.health_check import health_body
from pipeline import status
from pipeline.auth import Authenticator, Role, http_middleware
from pipeline.httpserver import HttpServer
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.host import Host
from pipeline.netaddr import Endpoint


class AuthConfig(StrictConfig):
    token: str = ""
    # The id of an authenticator extension (oidc, bearertokenauth): reads need `viewer`, actions `operator`.
    authenticator: str = ""

    @model_validator(mode="after")
    def _one(self) -> "AuthConfig":
        if self.token and self.authenticator:
            raise ValueError("set token or authenticator, not both")
        return self


class DebugApiConfig(StrictConfig):
    endpoint: Endpoint = "localhost:10205"
    auth: AuthConfig = AuthConfig()


class DebugApi(Component):
    def __init__(self, settings: Settings, config: DebugApiConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.server: HttpServer | None = None

    async def start(self, host: Host) -> None:
        app = web.Application(middlewares=[self._auth_middleware(),
                                           http_middleware(lambda: self._authenticator(host), _required_role)])
        app.router.add_get("/debug/health", lambda _: self._health(host))
        app.router.add_get("/debug/pipelines", lambda _: self._json(host.describe_graph()))
        app.router.add_get("/debug/{name:.+}", lambda request: self._route(host, request))
        app.router.add_post("/debug/{name:.+}", lambda request: self._action(host, request))
        self.server = HttpServer(self.config.endpoint, app)
        await self.server.start()

    async def shutdown(self, deadline: float | None = None) -> None:
        if self.server:
            await self.server.stop()

    async def _health(self, host: Host) -> web.Response:
        # Every pipeline's components with their status (the health_check's verbose view).
        components = status.registry.report(status.HealthRule(), verbose=True)["components"]
        return web.json_response({**health_body(host), "components": components},
                                 status=200 if host.ready else 503)

    async def _json(self, body: dict) -> web.Response:
        return web.json_response(body)

    async def _route(self, host: Host, request: web.Request) -> web.StreamResponse:
        handler = host.debug_routes.get(request.match_info["name"].strip("/"))
        if handler is None:
            raise web.HTTPNotFound(text=f"no debug route {request.path}; known: "
                                        f"{', '.join(sorted(host.debug_routes)) or 'none'}")
        return await handler(request)

    async def _action(self, host: Host, request: web.Request) -> web.StreamResponse:
        if not (self.config.auth.token or self.config.auth.authenticator):
            raise web.HTTPForbidden(text="admin actions need the debug API to require a token: set "
                                         "extensions::debug_api::auth::token (config/safety.yaml reads it from "
                                         "AGENTDBG_DEBUG_TOKEN) and send Authorization: Bearer <token>")
        handler = host.debug_routes.get(request.match_info["name"].strip("/").partition("/")[0])
        if handler is None:
            raise web.HTTPNotFound(text=f"no admin action at {request.path}")
        return await handler(request)

    def _authenticator(self, host: Host) -> Authenticator | None:
        name = self.config.auth.authenticator
        if not name:
            return None
        try:
            return host.authenticator(name)
        except ValueError as exc:  # fail closed while it is not running
            raise web.HTTPServiceUnavailable(text=str(exc)) from None

    def _auth_middleware(self):
        expected = f"Bearer {self.config.auth.token}".encode()

        @web.middleware
        async def check(request: web.Request, handler):
            if self.config.auth.token:
                given = request.headers.get("Authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    raise web.HTTPUnauthorized(text="this debug API needs Authorization: Bearer <token>",
                                               headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return check


def _required_role(request: web.Request) -> Role:
    """Reads need `viewer`; a POST (reset a breaker, lift a throttle) needs `operator`."""
    return Role.VIEWER if request.method in ("GET", "HEAD") else Role.OPERATOR


factory = Factory("debug_api", Kind.EXTENSION, DebugApiConfig, DebugApi,
                  description="debug HTTP API: /debug/health, /debug/pipelines, component routes")
