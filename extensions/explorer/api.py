"""The explorer's HTTP app: the JSON API under `/api/` and the web UI (static files) at `/`.

| route | answers |
|---|---|
| `GET /api/sessions` | sessions, newest first; filters `service`, `agent`, `since`/`until` (RFC 3339 or ns), `errors=1`, `min_cost`, `has_trigger=1`, `limit` |
| `GET /api/sessions/{id}` | every span of every trace of the session, with kind marks and subtree totals |
| `GET /api/spans/{trace_id}/{span_id}` | one span, every stored field |
| `GET /api/triggers` | trigger events (`kind`, `limit`), their examples resolved to sessions and spans |
| `GET /api/decisions` | safety decisions, newest first (`limit`) |
| `POST /api/forget` | erase a `session`'s or `user`'s data from every table, audited (admin token; forget.py) |
| `GET /api/graph` | agents, tools, models and dependencies with call counts and error rates per parent → child edge (`since`/`until`) |
| `GET /api/tail` | the newest spans of a `service` and/or `session` of the last `seconds` (default 300), newest first, for the live tail |
| `GET /api/safety` | the latest decision per breaker, throttle, canary and alert target, and the debug API's address |
| `POST /api/query` | `{"sql": ..., "format": "table"|"csv"|"json"}`: one read-only statement, the engine's output |

A bad parameter is a 400 naming it; a store failure a 502 with the engine's message; a store
with too many reads running and queued a 503 with Retry-After (store.py `ReadGate`). The sessions
list says `truncated` when more sessions matched than it answers.

Who may call what is one table, `ROUTES` below: the page and its assets are public, every read
needs `viewer`, SQL (`POST /api/query`) and erasure (`POST /api/forget`) need `admin`; a route
missing from the table needs `admin`. Credentials come from `auth.token` (one shared token, its
holder admin) or `auth.authenticator` (an oidc or bearertokenauth extension): 401 with
WWW-Authenticate without valid ones, 403 naming the role for a weaker one. With neither set
every route is open but erasure (the embedded default). Every SQL statement and erasure is
recorded in the audit trail (pipeline/audit.py) with who, the role, the peer address.
"""
from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from extensions.explorer import queries as Q
from extensions.explorer.config import ExplorerConfig
from extensions.explorer.forget import Forget, Writer, writer_for
from extensions.explorer.store import Store, StoreBusy, StoreError
from pipeline import audit
from pipeline.auth import PUBLIC, Authenticator, Role, Route, RouteTable, StaticToken, http_middleware, principal_of

STATIC = Path(__file__).resolve().parent / "static"
QUERY_FORMATS = {"table": "PrettyCompactMonoBlock", "csv": "CSVWithNames", "json": "JSONEachRow"}
READ_STATEMENT = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN)\b",
                            re.IGNORECASE | re.DOTALL)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadParameter(ValueError):
    pass


def _time_ns(text: str, name: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise BadParameter(f"{name}: an RFC 3339 time or nanoseconds since the epoch, not {text!r}") from None


def _number(text: str, name: str, kind: type = float) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise BadParameter(f"{name}: a number, not {text!r}") from None
    if value < 0:
        raise BadParameter(f"{name}: must not be negative")
    return value


def _json(data: Any) -> web.Response:
    """A JSON answer serialised by orjson: the pages the UI polls (a 2,000-span session is about
    1.5 MB) cost the event loop about 7 ms of CPU this way against 45 ms with the json module,
    time the daemon's ingest would otherwise lose."""
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _flag(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


ROUTES = RouteTable([
    Route("GET", "/", PUBLIC),
    Route("GET", "/static/{filename:.+}", PUBLIC),
    Route("GET", "/api/sessions", Role.VIEWER),
    Route("GET", "/api/sessions/{id}", Role.VIEWER),
    Route("GET", "/api/spans/{trace}/{span}", Role.VIEWER),
    Route("GET", "/api/triggers", Role.VIEWER),
    Route("GET", "/api/decisions", Role.VIEWER),
    Route("GET", "/api/safety", Role.VIEWER),
    Route("GET", "/api/graph", Role.VIEWER),
    Route("GET", "/api/tail", Role.VIEWER),
    Route("POST", "/api/query", Role.ADMIN),
    Route("POST", "/api/forget", Role.ADMIN),
])


class ExplorerApp:
    def __init__(self, config: ExplorerConfig, store: Store,
                 authenticator_of: Callable[[], Authenticator | None] | None = None,
                 writer: Writer | None = None) -> None:
        self.config = config
        self.store = store
        self.tables = Q.Tables.of(config.database, config.traces_table_name, config.events_table_name)
        self.session_cache = Q.SessionCache()  # an open session re-read while nothing changed in it
        self.trace_locator = Q.TraceLocator()  # the sessions of trigger examples, for the list's badges
        static = StaticToken(config.auth.token, "explorer:token") if config.auth.token else None
        self.authenticator_of = authenticator_of or (lambda: static)
        self.writer = writer or writer_for(config, store)

    def app(self) -> web.Application:
        needs = http_middleware(self.authenticator_of, lambda request: ROUTES.needs(request.method, request.path))
        app = web.Application(middlewares=[self._errors, needs])
        routes = [("GET", "/api/sessions", self.sessions), ("GET", "/api/sessions/{id}", self.session),
                  ("GET", "/api/spans/{trace}/{span}", self.span), ("GET", "/api/triggers", self.triggers),
                  ("GET", "/api/decisions", self.decisions), ("GET", "/api/safety", self.safety),
                  ("GET", "/api/graph", self.graph), ("GET", "/api/tail", self.tail),
                  ("POST", "/api/query", self.query), ("GET", "/", self.index),
                  ("POST", "/api/forget", Forget(self.config, self.writer).handle)]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
        app.router.add_static("/static/", STATIC, show_index=False)
        return app

    def _limit(self, request: web.Request) -> int:
        return min(_number(request.query.get("limit", str(self.config.max_rows)), "limit", int) or 1,
                   self.config.max_rows)

    async def index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def sessions(self, request: web.Request) -> web.Response:
        query = request.query
        where = Q.SessionFilter(
            service=query.get("service", ""), agent=query.get("agent", ""),
            since_ns=_time_ns(query["since"], "since") if query.get("since") else 0,
            until_ns=_time_ns(query["until"], "until") if query.get("until") else Q.MAX_NS,
            errors=_flag(query.get("errors", "")), min_cost=_number(query.get("min_cost") or "0", "min_cost"),
            has_trigger=_flag(query.get("has_trigger", "")), limit=self._limit(request))
        rows, truncated = await Q.sessions(self.store, self.tables, where, self.config.max_rows, self.trace_locator)
        return _json({"sessions": rows, "truncated": truncated})

    async def session(self, request: web.Request) -> web.Response:
        found = await self.session_cache.body(self.store, self.tables, request.match_info["id"], 100_000)
        if found is None:
            raise web.HTTPNotFound(text=f"no stored span has session {request.match_info['id']!r}")
        return web.Response(body=found, content_type="application/json")

    async def span(self, request: web.Request) -> web.Response:
        found = await Q.span_detail(self.store, self.tables, request.match_info["trace"], request.match_info["span"])
        if found is None:
            raise web.HTTPNotFound(text=f"no stored span {request.match_info['span']!r} in trace "
                                        f"{request.match_info['trace']!r}")
        return web.json_response(found)

    async def graph(self, request: web.Request) -> web.Response:
        query = request.query
        since = _time_ns(query["since"], "since") if query.get("since") else 0
        until = _time_ns(query["until"], "until") if query.get("until") else Q.MAX_NS
        return web.json_response(await Q.graph(self.store, self.tables, since, until, self._limit(request)))

    async def tail(self, request: web.Request) -> web.Response:
        query = request.query
        seconds = _number(query.get("seconds") or "300", "seconds")
        since = _time_ns(query["since"], "since") if query.get("since") else time.time_ns() - int(seconds * 1e9)
        spans = await Q.tail(self.store, self.tables, query.get("service", ""), query.get("session", ""), since,
                             min(self._limit(request), 500))
        return _json({"spans": spans, "since_ns": since})

    async def triggers(self, request: web.Request) -> web.Response:
        events = await Q.triggers(self.store, self.tables, self._limit(request), request.query.get("kind", ""))
        return web.json_response({"triggers": events})

    async def decisions(self, request: web.Request) -> web.Response:
        return web.json_response({"decisions": await Q.decisions(self.store, self.tables, self._limit(request))})

    async def safety(self, _: web.Request) -> web.Response:
        decided = await Q.decisions(self.store, self.tables, self.config.max_rows)
        debug = self.config.debug_api_url.rstrip("/")
        return web.json_response({"current": Q.current_state(decided),
                                  "debug_api": {"breakers": f"{debug}/debug/breakers",
                                                "decisions": f"{debug}/debug/decisions"}})

    async def query(self, request: web.Request) -> web.Response:
        """One read-only statement. The statement's first word is checked for a clear error, but
        what makes it read-only is the engine's `readonly` setting on every statement."""
        try:
            body = await request.json()
        except ValueError:
            raise BadParameter('the body must be JSON: {"sql": "SELECT ...", "format": "table"}') from None
        sql = body.get("sql") if isinstance(body, dict) else None
        fmt = body.get("format", "table") if isinstance(body, dict) else "table"
        if not isinstance(sql, str) or not sql.strip():
            raise BadParameter('sql: the statement to run, e.g. {"sql": "SELECT count() FROM otel.otel_traces"}')
        if fmt not in QUERY_FORMATS:
            raise BadParameter(f"format: one of {', '.join(QUERY_FORMATS)}, not {fmt!r}")
        if not READ_STATEMENT.match(sql):
            await self._audit_query(request, sql, 403)
            raise web.HTTPForbidden(text="only read statements are allowed here: SELECT, WITH, SHOW, DESCRIBE, EXPLAIN")
        try:
            data = await self.store.raw(sql.strip().rstrip(";"), QUERY_FORMATS[fmt])
        except StoreError as exc:
            await self._audit_query(request, sql, 403 if "READONLY" in str(exc) else 502)
            raise
        await self._audit_query(request, sql, 200, len(data))
        if fmt == "json":  # an array of row objects, as `agentdbg query --format json` prints from a directory
            data = b"[" + b",".join(line for line in data.splitlines() if line.strip()) + b"]\n"
        return web.Response(body=data, content_type="application/json" if fmt == "json" else "text/plain")

    async def _audit_query(self, request: web.Request, sql: str, status: int, size: int = 0) -> None:
        details = {"sql": sql[:4000], "answer_bytes": size}
        await audit.record(audit.document("sql_query", "", principal_of(request), request.remote or "", status,
                                          details))

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadParameter as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        except StoreBusy as exc:  # refused before it queued: the caller asks again later
            raise web.HTTPServiceUnavailable(text=str(exc), headers={"Retry-After": f"{exc.retry_after:.0f}"}) from None
        except StoreError as exc:
            status = web.HTTPForbidden if "READONLY" in str(exc) else web.HTTPBadGateway
            raise status(text=f"the store refused the query: {exc}") from None
