"""`debug_api`: the daemon's own HTTP API (default localhost:10205).

`/debug/health` (status and uptime), `/debug/pipelines` (the running graph), `/debug/routes`
(every route served and the role it needs), `POST /debug/reload` (load the config files again,
as SIGHUP does) and every route components add through the host (`/debug/<name>`).

Who may call what is one table, `ROUTES` below: reads need `viewer`, resetting a breaker and
lifting a throttle `operator`, reloading the config `admin`. A route served but missing from
the table needs `admin` (fails closed). Credentials come from:
- `auth.authenticator`: an oidc or bearertokenauth extension, whose principal carries the role;
- `auth.token`: one shared token, whose holder is `admin` (the one credential of the API);
- neither: reads are open and every action is refused (403): an action changes what the daemon
  does. `auth.required: true` (config/production.yaml, config/safety.yaml) makes the daemon
  refuse to start instead, naming `extensions::<id>::auth`, so an unset AGENTDBG_DEBUG_TOKEN
  never leaves the API open.
401 with WWW-Authenticate without valid credentials, 403 naming the role for a weaker one, 503
while the authenticator is not running. Every action (POST) that got past authentication is
recorded in the audit trail (pipeline/audit.py) with who, the role, the peer address and the
answer's status.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

from pipeline import audit, status
from pipeline.auth import Authenticator, Needs, Role, Route, RouteTable, StaticToken, http_middleware, principal_of
from pipeline.component import Component, Factory, Kind, Settings, StrictConfig
from pipeline.config.auth import AuthConfig
from pipeline.host import Host
from pipeline.httpserver import HttpServer
from pipeline.netaddr import Endpoint

ROUTES = RouteTable([
    Route("GET", "/debug/health", Role.VIEWER),
    Route("GET", "/debug/pipelines", Role.VIEWER),
    Route("GET", "/debug/routes", Role.VIEWER),
    Route("GET", "/debug/breakers", Role.VIEWER),
    Route("GET", "/debug/throttles", Role.VIEWER),
    Route("GET", "/debug/canaries", Role.VIEWER),
    Route("GET", "/debug/decisions", Role.VIEWER),
    Route("GET", "/debug/decisions/stream", Role.VIEWER),  # server-sent events (processors/safety/stream.py)
    Route("GET", "/debug/inflight", Role.VIEWER),  # open spans (connectors/triggers/live.py)
    Route("GET", "/debug/docs", Role.VIEWER),
    Route("GET", "/debug/docs/openapi.json", Role.VIEWER),
    Route("POST", "/debug/breakers/{name}/reset", Role.OPERATOR),
    Route("POST", "/debug/throttles/{subject_key:.+}/lift", Role.OPERATOR),
    Route("POST", "/debug/reload", Role.ADMIN),
])
ACTIONS = {"breakers": "breaker_reset", "throttles": "throttle_lift", "reload": "config_reload"}


class DebugApiConfig(StrictConfig):
    endpoint: Endpoint = "localhost:10205"
    auth: AuthConfig = AuthConfig()


class DebugApi(Component):
    def __init__(self, settings: Settings, config: DebugApiConfig) -> None:
        super().__init__(settings)
        self.config = config
        self.server: HttpServer | None = None
        self._static: StaticToken | None = None
        self._closing = asyncio.Event()

    async def start(self, host: Host) -> None:
        auth = self.config.auth
        if auth.required and not (auth.token or auth.authenticator):
            raise ValueError(f"extensions::{self.id}::auth: required is true but neither auth::token nor "
                             "auth::authenticator is set (the shipped configs read the token from "
                             "AGENTDBG_DEBUG_TOKEN: export it, or name an oidc/bearertokenauth extension); "
                             "refusing to serve the debug API without authentication")
        self._static = StaticToken(auth.token, f"{self.id}:token") if auth.token else None
        app = web.Application(middlewares=[http_middleware(lambda: self._authenticator(host), _required_role)])
        app.router.add_get("/debug/health", lambda _: self._health(host))
        app.router.add_get("/debug/pipelines", lambda _: self._json(host.describe_graph()))
        app.router.add_get("/debug/routes", lambda _: self._json({"routes": served_routes(app, host)}))
        app.router.add_post("/debug/reload", lambda request: self._audited(request, self._reload(host)))
        app.router.add_get("/debug/{name:.+}", lambda request: self._route(host, request))
        app.router.add_post("/debug/{name:.+}", lambda request: self._action(host, request))
        self.server = HttpServer(self.config.endpoint, app)
        await self.server.start()

    async def shutdown(self, deadline: float | None = None) -> None:
        self._closing.set()  # a reload request waiting on its own reload answers now (see _reload)
        if self.server:
            await self.server.stop()

    async def _health(self, host: Host) -> web.Response:
        # Every pipeline's components with their status (the health_check's verbose view).
        components = status.registry.report(status.HealthRule(), verbose=True)["components"]
        return web.json_response({**status.health_body(host), "components": components},
                                 status=200 if host.ready else 503)

    async def _json(self, body: dict) -> web.Response:
        return web.json_response(body)

    async def _route(self, host: Host, request: web.Request) -> web.StreamResponse:
        handler = host.debug_routes.get(request.match_info["name"].strip("/"))
        if handler is None:
            raise web.HTTPNotFound(text=f"no debug route {request.path}; known: "
                                        f"{', '.join(sorted(host.debug_routes)) or 'none'}")
        return await handler(request)

    def _refuse_open_actions(self) -> None:
        if not (self.config.auth.token or self.config.auth.authenticator):
            raise web.HTTPForbidden(text=f"admin actions need the debug API to require a token: set "
                                         f"extensions::{self.id}::auth::token (config/safety.yaml reads it from "
                                         "AGENTDBG_DEBUG_TOKEN) and send Authorization: Bearer <token>")

    async def _action(self, host: Host, request: web.Request) -> web.StreamResponse:
        self._refuse_open_actions()
        handler = host.debug_routes.get(request.match_info["name"].strip("/").partition("/")[0])
        if handler is None:
            raise web.HTTPNotFound(text=f"no admin action at {request.path}")
        return await self._audited(request, handler(request))

    async def _reload(self, host: Host) -> web.Response:
        """The reload runs as a task of its own: when the new config replaces this API, its
        shutdown must not wait for (or cancel) the request that asked for the reload."""
        self._refuse_open_actions()
        if host.reload is None:
            raise web.HTTPNotImplemented(text="this process cannot reload its configuration")
        reload = asyncio.ensure_future(host.reload())
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait({reload, closing}, return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if not reload.done():
            return web.json_response({"reloaded": None, "note": "the new configuration replaces this debug API; "
                                      "the reload goes on: see the log"}, status=202)
        if reload.result():
            return web.json_response({"reloaded": True})
        return web.json_response({"reloaded": False, "error": "the configuration was not applied (invalid, or "
                                  "its components did not start); the running pipelines are kept: see the log"},
                                 status=422)

    async def _audited(self, request: web.Request, answer: Any) -> web.StreamResponse:
        """Run the action and record it, with its outcome, in the audit trail."""
        try:
            response = await answer
        except web.HTTPException as exc:
            await audit.record(await _audit_document(request, exc.status, None))
            raise
        await audit.record(await _audit_document(request, response.status, response))
        return response

    def _authenticator(self, host: Host) -> Authenticator | None:
        name = self.config.auth.authenticator
        if not name:
            return self._static
        try:
            return host.authenticator(name)
        except ValueError as exc:  # fail closed while it is not running
            raise web.HTTPServiceUnavailable(text=str(exc)) from None


def _required_role(request: web.Request) -> Needs:
    return ROUTES.needs(request.method, request.path)


async def _audit_document(request: web.Request, status_code: int, response: web.StreamResponse | None) -> dict:
    name = request.path.removeprefix("/debug/").strip("/")
    route, _, rest = name.partition("/")
    target = rest.rpartition("/")[0] if rest else ""
    details: dict[str, Any] = {"path": request.path}
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        body = {}
    claimed = ""
    if isinstance(body, dict):
        details["reason"] = str(body.get("reason", ""))[:1000]
        claimed = str(body.get("requested_by", ""))[:200]
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        with contextlib.suppress(orjson.JSONDecodeError):
            answer = orjson.loads(response.body)
            if isinstance(answer, dict) and isinstance(answer.get("decisions"), list):
                details["decisions"] = [d.get("id") for d in answer["decisions"] if isinstance(d, dict)]
    return audit.document(ACTIONS.get(route, route), target, principal_of(request), request.remote or "",
                          status_code, details, claimed)


def served_routes(app: web.Application, host: Host) -> list[dict[str, Any]]:
    """Every route this API serves (its own and the components'), with the role `ROUTES` gives it;
    `declared` is false for one missing from the table (it then needs admin)."""
    paths: list[tuple[str, str]] = []
    for resource in app.router.resources():
        pattern = resource.canonical
        if "{name" not in pattern:
            paths += [(route.method, pattern) for route in resource if route.method != "HEAD"]
    paths += [("GET", f"/debug/{name}") for name in sorted(host.debug_routes)]
    paths += [(route.method, route.pattern) for route in ROUTES.routes
              if route.method == "POST" and route.pattern.split("/")[2] in host.debug_routes]
    return [{"method": method, "path": path, "role": _role_name(ROUTES.needs(method, path)),
             "declared": ROUTES.declared(method, path)} for method, path in dict.fromkeys(paths)]


def _role_name(needs: Needs) -> str:
    return needs.value


factory = Factory("debug_api", Kind.EXTENSION, DebugApiConfig, DebugApi,
                  description="debug HTTP API: /debug/health, /debug/pipelines, component routes")
