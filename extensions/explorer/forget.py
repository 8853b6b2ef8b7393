"""`POST /api/forget`: erase one person's data from every table (`agentdbg forget`).

Body `{"session": "<id>"}` or `{"user": "<id>"}`, optionally `"requested_by": "<name>"`.
Admin only: the explorer must have a token (`extensions::explorer::auth::token`) and the
request must carry it; without a configured token the route answers 403 (an open API never
erases), without the right token 401.

What is erased, on the embedded chDB engine (`store: chdb`):
- every trace one of whose spans carries the session (`gen_ai.conversation.id`, the canonical
  key the genai processor writes, or `session.id`; a session id that is a trace id, as the
  explorer shows a trace without a session, names that trace) or the user (`user.id` or
  `enduser.id`, on the span or its resource): the whole trace, every span of it, so nothing of
  the session is left;
- those traces' rows in the trace-id lookup table (`<traces>_trace_id_ts`);
- audit-table documents that name one of those traces anywhere (a trigger event's example
  traces, a safety decision's cause quoting them) or whose subject is the session: a trace id
  is 32 hex digits, so a document holding one is about that trace. Erasure records are kept.
Deletes are lightweight `DELETE FROM ... WHERE` statements, synchronous, on the writer's
connection and thread (pipeline/chdb_engine.py `ChdbStore.write`): the explorer's reader
connection is read-only. Spans of the session that arrive after the erasure are stored as
usual (erase again once the agent is stopped).

The erasure itself is recorded in the audit table: a document `agentdbg.erasure/v1` with who
asked (the token's holder, the claimed `requested_by`, the client address), what (the session
or user, the trace ids), when, and how many rows each table lost. The answer is that document.

A ClickHouse server store (`store: clickhouse`) answers 501: its reader is read-only by
design and has no writer here.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson
from aiohttp import web

from extensions.explorer.config import ExplorerConfig
from extensions.explorer.queries import Tables
from extensions.explorer.store import ChdbReader, Store
from pipeline.chdb_engine import ChdbStore, ReadError

SCHEMA = "agentdbg.erasure/v1"
SESSION_KEYS = ("gen_ai.conversation.id", "session.id")
USER_KEYS = ("user.id", "enduser.id")
# An audit document naming one of the traces, or whose subject is the session (its JSON text).
NAMES_TRACE = "arrayExists(t -> position(Document, t) > 0, {ids:Array(String)})"
SUBJECT_SESSION = "JSONExtractString(Document, 'subject', 'session')"


class ForgetError(web.HTTPBadRequest):
    pass


def _target(body: Any) -> tuple[str, str]:
    """("session" or "user", the id) from the request body; ForgetError otherwise."""
    if not isinstance(body, dict):
        raise ForgetError(text='the body must be JSON: {"session": "<id>"} or {"user": "<id>"}')
    given = [(key, body[key]) for key in ("session", "user") if body.get(key) not in (None, "")]
    if len(given) != 1 or not isinstance(given[0][1], str) or not given[0][1].strip():
        raise ForgetError(text='give exactly one of "session" or "user", a non-empty string')
    return given[0]


def _matches(field: str) -> str:
    """The WHERE condition on the spans table for a session or a user id bound as {id:String}."""
    if field == "session":
        keys = [f"SpanAttributes['{key}'] = {{id:String}}" for key in SESSION_KEYS]
        return " OR ".join([*keys, "TraceId = {id:String}"])
    keys = [f"{column}['{key}'] = {{id:String}}" for key in USER_KEYS
            for column in ("SpanAttributes", "ResourceAttributes")]
    return " OR ".join(keys)


async def _count_and_delete(engine: ChdbStore, table: str, where: str, params: dict[str, Any]) -> int:
    [row] = await engine.write(f"SELECT count() AS n FROM {table} WHERE {where}", params)
    if row["n"]:
        await engine.write(f"DELETE FROM {table} WHERE {where}", params)
    return int(row["n"])


async def erase(engine: ChdbStore, tables: Tables, lookup: str, field: str, value: str) -> dict[str, Any]:
    """Delete the session's or user's traces from the spans, lookup and audit tables; the counts."""
    found = await engine.write(f"SELECT DISTINCT TraceId AS t FROM {tables.traces} WHERE {_matches(field)}",
                               {"id": value})
    trace_ids = sorted(row["t"] for row in found)
    params: dict[str, Any] = {"ids": trace_ids, "id": value, "schema": SCHEMA}
    by_trace = "TraceId IN {ids:Array(String)}"
    about = NAMES_TRACE + (f" OR {SUBJECT_SESSION} = {{id:String}}" if field == "session" else "")
    about = f"Schema != {{schema:String}} AND ({about})"
    deleted = {"spans": await _count_and_delete(engine, tables.traces, by_trace, params) if trace_ids else 0,
               "trace_lookup": await _count_and_delete(engine, lookup, by_trace, params) if trace_ids else 0,
               "audit": await _count_and_delete(engine, tables.events, about, params)}
    return {"trace_ids": trace_ids, "deleted": deleted}


async def record(engine: ChdbStore, events: str, document: dict[str, Any]) -> None:
    """The erasure's row in the audit table (the columns pipeline/clickhouse/audit.py writes)."""
    sql = (f"INSERT INTO {events} (Timestamp, Schema, Id, Kind, Status, Target, Document) "
           "SELECT fromUnixTimestamp64Nano({ts:Int64}), {schema:String}, {id:String}, 'forget', '', "
           "{target:String}, {doc:String}")
    await engine.write(sql, {"ts": time.time_ns(), "schema": SCHEMA, "id": document["id"],
                             "target": document["target_key"], "doc": orjson.dumps(document).decode()})


class Forget:
    """The route's handler, bound to the explorer's config, store and tables."""

    def __init__(self, config: ExplorerConfig, store: Store, tables: Tables) -> None:
        self.config = config
        self.store = store
        self.tables = tables
        self.lookup = tables.traces[:-1] + "_trace_id_ts`"  # the traces table's quoted name + suffix

    def _engine(self) -> ChdbStore:
        if not isinstance(self.store, ChdbReader):
            raise web.HTTPNotImplemented(text="erasure runs on the embedded chdb store only (store: chdb)")
        return self.store._engine()

    async def handle(self, request: web.Request) -> web.Response:
        if not self.config.auth.token:  # the auth middleware has checked the token when there is one
            raise web.HTTPForbidden(text="erasure needs an admin token: set extensions::explorer::auth::token")
        try:
            body = await request.json()
        except ValueError:
            body = None
        field, value = _target(body)
        engine = self._engine()
        try:
            erased = await erase(engine, self.tables, self.lookup, field, value)
            document = {"schema": SCHEMA, "id": str(uuid.uuid4()), "action": "forget",
                        "decided_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                        "target": {field: value}, "target_key": f"{field}={value}",
                        "requested_by": {"subject": "explorer-token", "role": "admin",
                                         "claimed": str((body or {}).get("requested_by") or ""),
                                         "remote": request.remote or ""},
                        **erased}
            await record(engine, self.tables.events, document)
        except ReadError as exc:
            raise web.HTTPBadGateway(text=f"the store refused the erasure: {exc}") from None
        return web.json_response(document)
