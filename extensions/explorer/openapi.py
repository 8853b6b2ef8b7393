"""The OpenAPI 3.1 document of the explorer's API and the debug API, served by the debug API at
`/debug/docs/openapi.json`, and `/debug/docs`, a page that renders it (plain HTML, no script).

The explorer's operations are listed here with their parameters; the debug API's routes are
the ones registered on the host when the document is asked for (`/debug/health`,
`/debug/pipelines` and every component's `/debug/<name>`), so the document always matches
what this daemon serves.
"""
from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from extensions.explorer.api import ROUTES
from pipeline.host import Host

_TIME = "RFC 3339 time or nanoseconds since the epoch"
# (path, summary, [(name, in, type, description)])
EXPLORER: tuple[tuple[str, str, list[tuple[str, str, str, str]]], ...] = (
    ("/api/sessions", "Sessions, newest first: services, agents, spans, start, duration, tokens, cost, errors, "
                      "trigger count; `truncated` when more matched than it lists", [
        ("service", "query", "string", "only sessions with a span of this service"),
        ("agent", "query", "string", "only sessions with this gen_ai.agent.name"),
        ("since", "query", "string", _TIME), ("until", "query", "string", _TIME),
        ("errors", "query", "boolean", "1: only sessions with an error span"),
        ("min_cost", "query", "number", "at least this cost, USD"),
        ("has_trigger", "query", "boolean", "1: only sessions a stored trigger event points at"),
        ("limit", "query", "integer", "at most this many rows")]),
    ("/api/sessions/{id}", "Every span of every trace of a session, in start order, with kind marks, durations, "
                           "tokens, cost and the totals of each subtree", [
        ("id", "path", "string", "gen_ai.conversation.id, or a trace id")]),
    ("/api/spans/{trace}/{span}", "One span, every stored field (attributes, events, links, resource), values whole", [
        ("trace", "path", "string", "trace id, hex"), ("span", "path", "string", "span id, hex")]),
    ("/api/triggers", "Trigger events from the audit table, their examples resolved to sessions and spans", [
        ("kind", "query", "string", "only this trigger kind"), ("limit", "query", "integer", "at most this many")]),
    ("/api/decisions", "Safety decisions from the audit table, newest first, with their causes", [
        ("limit", "query", "integer", "at most this many")]),
    ("/api/safety", "The latest decision per breaker, throttle, canary and alert target", []),
    ("/api/graph", "Agents, models, tools and dependencies; calls, errors and error rate per parent -> child edge", [
        ("since", "query", "string", _TIME), ("until", "query", "string", _TIME),
        ("limit", "query", "integer", "at most this many edges")]),
    ("/api/tail", "The newest spans of a service and/or session (the live tail)", [
        ("service", "query", "string", "service name"), ("session", "query", "string", "session id"),
        ("seconds", "query", "number", "how far back (default 300)"), ("since", "query", "string", _TIME),
        ("limit", "query", "integer", "at most this many (500 at most)")]),
)
DEBUG_SUMMARIES = {
    "health": "Status, uptime and every component's health",
    "pipelines": "The running graph: pipelines, their components and persistent storage",
    "docs": "This page", "docs/openapi.json": "This document",
}


def _parameter(name: str, where: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": text, "schema": {"type": kind}}


def document(host: Host, explorer_url: str) -> dict[str, Any]:
    json_answer = {"200": {"description": "JSON", "content": {"application/json": {}}},
                   "400": {"description": "a bad parameter, named in the text"},
                   "401": {"description": "no valid credentials (when auth.token or auth.authenticator is set)"},
                   "403": {"description": "the caller's role is weaker than x-required-role"},
                   "502": {"description": "the store refused or failed the query; the engine's message"},
                   "503": {"description": "too many reads running and waiting; ask again after Retry-After seconds"}}
    paths: dict[str, Any] = {}
    for path, summary, params in EXPLORER:
        paths[path] = {"servers": [{"url": explorer_url}],
                       "get": {"summary": summary, "parameters": [_parameter(*p) for p in params],
                               "responses": json_answer, "x-required-role": ROUTES.needs("GET", path).value}}
    paths["/api/query"] = {"servers": [{"url": explorer_url}], "post": {
        "summary": "One read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), run with the engine's readonly "
                   "setting; the engine's output",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["sql"],
            "properties": {"sql": {"type": "string"}, "format": {"enum": ["table", "csv", "json"]}}}}}},
        "responses": {"200": {"description": "the result"},
                      "403": {"description": "not a read statement, or the caller is not admin"}},
        "x-required-role": ROUTES.needs("POST", "/api/query").value}}
    for name in sorted({"health", "pipelines", *host.debug_routes}):
        paths[f"/debug/{name}"] = {"get": {"summary": DEBUG_SUMMARIES.get(name, f"the {name} component's state"),
                                           "responses": {"200": {"description": "JSON"}}}}
    return {"openapi": "3.1.0",
            "info": {"title": "agentdbg debug and explorer API", "version": "1"},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{}, {"bearer": []}],
            "paths": paths}


def page(doc: dict[str, Any]) -> str:
    """The document as one HTML page: each path, its method, summary and parameters."""
    rows = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "servers":
                continue
            server = item.get("servers", [{"url": ""}])[0]["url"]
            params = "".join(f"<li><code>{html.escape(p['name'])}</code> ({p['in']}, {p['schema']['type']}): "
                             f"{html.escape(p['description'])}</li>" for p in operation.get("parameters", []))
            rows.append(f"<section><h2><code>{method.upper()} {html.escape(server + path)}</code></h2>"
                        f"<p>{html.escape(operation['summary'])}</p>{'<ul>' + params + '</ul>' if params else ''}"
                        "</section>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>agentdbg API</title>"
            "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:960px}"
            "section{border-bottom:1px solid #ddd;padding:4px 0}h2{font-size:15px}</style></head><body>"
            f"<h1>{html.escape(doc['info']['title'])}</h1>"
            "<p>The machine-readable document: <a href=\"/debug/docs/openapi.json\">/debug/docs/openapi.json</a> "
            "(OpenAPI 3.1).</p>" + "".join(rows) + "</body></html>")


def add_routes(host: Host, explorer_url: str) -> None:
    """Serve the document and its page on the debug API."""
    async def as_json(_: web.Request) -> web.Response:
        return web.json_response(document(host, explorer_url))

    async def as_page(_: web.Request) -> web.Response:
        return web.Response(text=page(document(host, explorer_url)), content_type="text/html")

    host.add_debug_route("docs/openapi.json", as_json)
    host.add_debug_route("docs", as_page)
