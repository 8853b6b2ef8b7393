"""`POST /api/forget`: erase one person's data from every table (`agentdbg forget`).

Body `{"session": "<id>"}` or `{"user": "<id>"}`, optionally `"requested_by": "<name>"`.
Admin only: the route table of api.py gives it the `admin` role, resolved through the
explorer's `auth` (`auth.token`, whose holder is admin, or `auth.authenticator`, an oidc or
bearertokenauth extension). An explorer with no auth configured answers 403: an open API
never erases.

What is erased:
- every trace one of whose spans carries the session (`gen_ai.conversation.id`, the canonical
  key the genai processor writes, or `session.id`; a session id that is a trace id, as the
  explorer shows a trace without a session, names that trace) or the user (`user.id` or
  `enduser.id`, on the span or its resource): the whole trace, every span of it, so nothing of
  the session is left;
- those traces' rows in the trace-id lookup table (`<traces>_trace_id_ts`);
- the session summaries (`<traces>_sessions`, `<traces>_session_traces`,
  `<traces>_session_upgrades`): the erased traces' rows, and the summary rows of every session
  they were part of, which are then summarised again from the spans left (a session whose
  traces were all erased is gone);
- the log records (`logs_table_name`, otelcol's `otel_logs`) of those traces, and those that
  carry the session or user themselves (the same keys, in their log or resource attributes),
  traced or not.

The audit table is not touched: it is append-only for the daemon (pipeline/audit.py). Trigger
events and safety decisions that name the erased traces stay, as the record of what the daemon
saw and did, until the audit table's own TTL (`events_ttl`, a year by default) expires them;
the erasure's answer says how many there are (`audit_kept`). Audit documents of SQL queries
keep the statement's text, which may quote a session id; they are kept too. The erasure records itself by
adding one row, a document `agentdbg.erasure/v1` with who asked (subject, role and how they
authenticated, the claimed `requested_by`, the client address), what (the session or user,
the trace ids), when, and how many rows each table lost. The answer is that document.

Where it runs:
- the embedded chDB engine (`store: chdb`): lightweight `DELETE FROM ... WHERE` statements,
  synchronous, on the writer's connection and thread (pipeline/chdb_engine.py
  `ChdbStore.write`; the explorer's reader connection is read-only);
- a ClickHouse server (`store: clickhouse`): the same lightweight `DELETE` statements over a
  second clickhouse-connect client of its own, without the reader's `readonly` setting, with
  `lightweight_deletes_sync = 2` so the answer comes once every replica has applied them.
Spans of the session that arrive after the erasure are stored as usual (erase again once the
agent is stopped).
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from aiohttp import web

from extensions.explorer.config import ClickHouseConfig, ExplorerConfig
from extensions.explorer.queries import Tables
from extensions.explorer.store import ChdbReader, ClickHouseReader, StoreError
from pipeline import audit
from pipeline.auth import principal_of
from pipeline.chdb_engine import ReadError
from pipeline.clickhouse.audit import events_table_statements
from pipeline.clickhouse.schema import qualified
from pipeline.clickhouse.sessions import SESSIONS_SUFFIX, resummarise_statement, summary_tables, upgrades_table

SCHEMA = "agentdbg.erasure/v1"
SESSION_KEYS = ("gen_ai.conversation.id", "session.id")
USER_KEYS = ("user.id", "enduser.id")
# An audit document naming one of the traces, or whose subject is the session (its JSON text).
NAMES_TRACE = "arrayExists(t -> position(Document, t) > 0, {ids:Array(String)})"
SUBJECT_SESSION = "JSONExtractString(Document, 'subject', 'session')"
log = logging.getLogger("agentdbg.explorer")


class ForgetError(web.HTTPBadRequest):
    pass


class Writer(Protocol):
    """Where the explorer may write: the erasure's deletes and the audit table's inserts."""

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, params: dict[str, Any]) -> None: ...


class ChdbWriter:
    """The writer connection of the process's chDB engine (the one the explorer reads)."""

    def __init__(self, reader: ChdbReader) -> None:
        self.reader = reader

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return await self.reader._engine().write(sql, params)

    async def execute(self, sql: str, params: dict[str, Any]) -> None:
        await self.reader._engine().write(sql, params)


class ClickHouseWriter:
    """A clickhouse-connect client of its own, allowed to write (the reader's is `readonly`)."""

    SETTINGS = {"lightweight_deletes_sync": 2}

    def __init__(self, config: ClickHouseConfig) -> None:
        # A reader's connection (its settings apply per statement: this one sends none of them).
        self._connection = ClickHouseReader(config.endpoint, config.username, config.password)
        self._client: Any = None

    async def _connected(self) -> Any:
        if self._client is None:
            await self._connection.start()
            self._client = self._connection._client
        return self._client

    async def close(self) -> None:
        await self._connection.close()
        self._client = None

    async def rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        client = await self._connected()
        try:
            return list((await client.query(sql, parameters=params)).named_results())
        except Exception as exc:  # noqa: BLE001 - the server's message is the answer
            raise StoreError(" ".join(str(exc).split())) from None

    async def execute(self, sql: str, params: dict[str, Any]) -> None:
        client = await self._connected()
        settings = self.SETTINGS if sql.lstrip().upper().startswith("DELETE") else {}
        try:
            await client.command(sql, parameters=params, settings=settings)
        except Exception as exc:  # noqa: BLE001 - the server's message is the answer
            raise StoreError(" ".join(str(exc).split())) from None


def writer_for(config: ExplorerConfig, store: Any) -> Writer:
    if isinstance(store, ChdbReader):
        return ChdbWriter(store)
    return ClickHouseWriter(config.clickhouse)


class AuditSink:
    """Inserts audit documents into the store's audit table (created when no exporter has yet)."""

    def __init__(self, writer: Writer, tables: Tables, database: str) -> None:
        self.writer = writer
        self.tables = tables
        self.database = database
        self._created = False

    async def __call__(self, document: dict[str, Any]) -> None:
        if not self._created:
            from pipeline.clickhouse.schema import quote

            await self.writer.execute(f"CREATE DATABASE IF NOT EXISTS {quote(self.database)}", {})
            await self.writer.execute(events_table_statements(self.tables.events)[0], {})
            self._created = True
        await self.writer.execute(audit.insert_statement(self.tables.events), audit.insert_parameters(document))


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


def _log_matches(field: str) -> str:
    """The WHERE condition on the log records for a session or user named in their own attributes."""
    keys = SESSION_KEYS if field == "session" else USER_KEYS
    return " OR ".join(f"{column}['{key}'] = {{id:String}}" for key in keys
                       for column in ("LogAttributes", "ResourceAttributes"))


async def _count(writer: Writer, table: str, where: str, params: dict[str, Any]) -> int:
    [row] = await writer.rows(f"SELECT count() AS n FROM {table} WHERE {where}", params)
    return int(row["n"])


async def _count_and_delete(writer: Writer, table: str, where: str, params: dict[str, Any]) -> int:
    found = await _count(writer, table, where, params)
    if found:
        await writer.execute(f"DELETE FROM {table} WHERE {where}", params)
    return found


@dataclass(frozen=True)
class Target:
    """The tables an erasure touches: the spans, their trace-id lookup, the session summaries."""

    tables: Tables
    lookup: str
    database: str
    traces_name: str  # the spans table's name, unquoted
    logs_name: str  # the log records' table name, unquoted

    @classmethod
    def of(cls, config: ExplorerConfig) -> "Target":
        tables = Tables.of(config.database, config.traces_table_name, config.events_table_name)
        return cls(tables, tables.traces[:-1] + "_trace_id_ts`", config.database, config.traces_table_name,
                   config.logs_table_name)


async def erase(writer: Writer, target: Target, field: str, value: str) -> dict[str, Any]:
    """Delete the session's or user's traces from the spans, lookup and session-summary tables
    (summarising again what is left of a session the traces shared); the counts, and how many
    audit documents name them (kept: the audit table is append-only)."""
    tables = target.tables
    found = await writer.rows(f"SELECT DISTINCT TraceId AS t FROM {tables.traces} WHERE {_matches(field)}",
                              {"id": value})
    trace_ids = sorted(row["t"] for row in found)
    params: dict[str, Any] = {"ids": trace_ids, "id": value, "schema": SCHEMA, "audit": audit.SCHEMA}
    by_trace = "TraceId IN {ids:Array(String)}"
    about = NAMES_TRACE + (f" OR {SUBJECT_SESSION} = {{id:String}}" if field == "session" else "")
    about = f"Schema NOT IN ({{schema:String}}, {{audit:String}}) AND ({about})"  # trigger events, decisions
    deleted = {"spans": 0, "trace_lookup": 0, "sessions": 0, "session_traces": 0, "logs": 0}
    if trace_ids:
        deleted["spans"] = await _count_and_delete(writer, tables.traces, by_trace, params)
        deleted["trace_lookup"] = await _count_and_delete(writer, target.lookup, by_trace, params)
        deleted.update(await _erase_summaries(writer, target, params))
    if await _exists(writer, target.database, target.logs_name):  # no logs pipeline has written yet: no table
        logs = qualified(target.database, target.logs_name)
        deleted["logs"] = await _count_and_delete(writer, logs, f"{by_trace} OR {_log_matches(field)}", params)
    return {"trace_ids": trace_ids, "deleted": deleted, "audit_kept": await _audit_rows(writer, tables, about, params)}


async def _erase_summaries(writer: Writer, target: Target, params: dict[str, Any]) -> dict[str, int]:
    """The session summaries (pipeline/clickhouse/sessions.py) of the erased traces: their rows
    deleted, then the sessions they were part of summarised again from the spans left."""
    sessions, session_traces = summary_tables(target.database, target.traces_name)
    upgrades = upgrades_table(target.database, target.traces_name)
    if not await _exists(writer, target.database, target.traces_name + SESSIONS_SUFFIX):
        return {}  # a store from before the summaries
    by_trace, by_session = "TraceId IN {ids:Array(String)}", "Session IN {touched:Array(String)}"
    rows = await writer.rows(f"SELECT DISTINCT Session AS s FROM {session_traces} WHERE {by_trace}", params)
    touched = sorted({row["s"] for row in rows} | set(params["ids"]))  # a trace without a session is its own
    bound = {**params, "touched": touched}
    counts = {"session_traces": await _count_and_delete(writer, session_traces, by_trace, bound),
              "sessions": await _count_and_delete(writer, sessions, by_session, bound),
              "session_upgrades": await _count_and_delete(writer, upgrades, by_trace, bound)}
    left = f"TraceId IN (SELECT TraceId FROM {session_traces} WHERE Session IN {{touched:Array(String)}})"
    await writer.execute(resummarise_statement(target.database, target.traces_name, left), bound)
    return counts


async def _exists(writer: Writer, database: str, table: str) -> bool:
    [row] = await writer.rows("SELECT count() AS n FROM system.tables WHERE database = {db:String} AND "
                              "name = {table:String}", {"db": database, "table": table})
    return bool(row["n"])


async def _audit_rows(writer: Writer, tables: Tables, about: str, params: dict[str, Any]) -> int:
    try:
        return await _count(writer, tables.events, about, params)
    except (ReadError, StoreError) as exc:
        if "UNKNOWN_TABLE" in str(exc):  # no audit table yet: nothing names the traces
            return 0
        raise


class Forget:
    """The route's handler, bound to the explorer's config, store, writer and tables."""

    def __init__(self, config: ExplorerConfig, writer: Writer) -> None:
        self.config = config
        self.writer = writer
        self.target = Target.of(config)
        self.sink = AuditSink(writer, self.target.tables, config.database)

    async def handle(self, request: web.Request) -> web.Response:
        principal = principal_of(request)
        if principal is None:  # no auth configured: the route table's admin role was not checked
            raise web.HTTPForbidden(text="erasure needs an admin: set extensions::explorer::auth::token or "
                                         "extensions::explorer::auth::authenticator")
        try:
            body = await request.json()
        except ValueError:
            body = None
        field, value = _target(body)
        try:
            erased = await erase(self.writer, self.target, field, value)
            document = {"schema": SCHEMA, "id": str(uuid.uuid4()), "action": "forget",
                        "decided_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                        "target": {field: value}, "target_key": f"{field}={value}",
                        "requested_by": {"subject": principal.subject,
                                         "role": principal.role.value if principal.role else "",
                                         "method": principal.method,
                                         "claimed": str((body or {}).get("requested_by") or ""),
                                         "remote": request.remote or ""},
                        **erased}
            await self.sink(document)
        except (ReadError, StoreError) as exc:
            raise web.HTTPBadGateway(text=f"the store refused the erasure: {exc}") from None
        log.info("audit", extra={"kv": {"action": "forget", "target": document["target_key"],
                                        "subject": principal.subject, "remote": request.remote or "",
                                        "traces": len(erased["trace_ids"])}})
        return web.json_response(document)
