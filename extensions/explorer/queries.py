"""The explorer's questions, as parameterised SQL over the otelcol `otel_traces` schema and the
audit table `agentdbg_decisions`, and the shaping of their answers.

The GenAI fields are the canonical keys the `genai` processor writes on every span it
recognises, whatever instrumentation sent it: `gen_ai.conversation.id` (the session, given to
every span of a GenAI trace), `gen_ai.agent.name`, `gen_ai.operation.name`,
`gen_ai.usage.input_tokens` / `output_tokens`, and `gen_ai.usage.cost` (USD). A trace without
a session id is its own session (its trace id), as the processor does for AgentOps.

Table names come from the config (quoted here); every value from a request is a bound
parameter.

What each view reads (none scans the spans table's Map columns for the whole store):
- the sessions list: the per-session summary kept at insert time (pipeline/clickhouse/sessions.py),
  its rows merged per session with `GROUP BY` (no `FINAL`), newest last activity first. A row
  counted under a trace id (spans that came before the trace's session key) is folded into the
  session the upgrades table names for that trace. The page is chosen on the totals that are
  cheap to merge (sums, first start, last end); the array unions and distinct trace counts are
  merged for that page's sessions only. Totals are the whole session's; the `since`/`until`
  window selects the sessions active in it. Trigger badges: the newest trigger events' example
  traces, located once per trace (`TraceLocator`), counted per session in Python;
- a session: its trace ids and time range from the session → trace lookup (primary key), then
  those traces' spans by the spans table's `TraceId` bloom filter within that range;
- the live tail: the newest span start times first (one narrow column), then only the spans at
  or after the n-th newest, with their attributes.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from extensions.explorer.store import Store, StoreError
from pipeline.clickhouse.sessions import summary_tables, upgrades_table

TRIGGER_SCHEMA = "agentdbg.trigger/v1"
DECISION_SCHEMA = "agentdbg.decision/v1"
TOKENS_IN, TOKENS_OUT, COST = "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cost"
# The attributes a session view carries per span (the span detail has all of them).
SPAN_KEYS = (
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.agent.name", "gen_ai.tool.name", "gen_ai.tool.call.id", TOKENS_IN, TOKENS_OUT, COST,
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "error.type", "openinference.span.kind",
    "http.request.method", "http.method", "url.full", "http.url", "http.response.status_code", "db.system",
    "db.system.name", "gen_ai.data_source.id",
)
LLM_OPERATIONS = {"chat", "text_completion", "generate_content", "embeddings"}
AGENT_OPERATIONS = {"invoke_agent", "create_agent", "invoke_workflow"}
# Decision actions by the state they change, for the "current state" view.
FAMILIES = {"breaker_open": "breaker", "breaker_half_open": "breaker", "breaker_close": "breaker",
            "fallback": "breaker", "rollback": "canary", "promote": "canary", "throttle": "throttle",
            "unthrottle": "throttle", "alert": "alert", "resolve_alert": "alert"}
MAX_NS = 2**63 - 1


def quote(identifier: str) -> str:
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True)
class Tables:
    traces: str
    events: str
    sessions: str = ""  # the per-session summary (pipeline/clickhouse/sessions.py)
    session_traces: str = ""  # its session → trace lookup
    upgrades: str = ""  # its trace → real session of the traces counted under their own id first

    @classmethod
    def of(cls, database: str, traces: str, events: str) -> "Tables":
        sessions, session_traces = summary_tables(database, traces)
        return cls(f"{quote(database)}.{quote(traces)}", f"{quote(database)}.{quote(events)}", sessions,
                   session_traces, upgrades_table(database, traces))


@dataclass(frozen=True)
class SessionFilter:
    service: str = ""
    agent: str = ""
    since_ns: int = 0
    until_ns: int = MAX_NS
    errors: bool = False
    min_cost: float = 0.0
    has_trigger: bool = False
    limit: int = 100


def span_kind(attrs: dict[str, str], otel_kind: str) -> str:
    """The kind mark of a span: llm, tool, agent, retrieval, http, db, or the OTel span kind."""
    operation = attrs.get("gen_ai.operation.name", "")
    if operation in LLM_OPERATIONS:
        return "llm"
    if operation == "execute_tool":
        return "tool"
    if operation in AGENT_OPERATIONS:
        return "agent"
    if operation == "retrieval" or attrs.get("openinference.span.kind", "").lower() in ("retriever", "reranker") \
            or "gen_ai.data_source.id" in attrs:
        return "retrieval"
    if any(key in attrs for key in ("http.request.method", "http.method", "url.full", "http.url")):
        return "http"
    if "db.system" in attrs or "db.system.name" in attrs:
        return "db"
    return (otel_kind or "internal").lower()


def _int(text: Any) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return 0.0


async def _rows(store: Store, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows, or none when the table does not exist yet (nothing stored so far)."""
    try:
        return await store.rows(sql, params)
    except StoreError as exc:
        if exc.missing:
            return []
        raise


# -- triggers and decisions ---------------------------------------------------------------------

async def documents(store: Store, tables: Tables, schema: str, limit: int, kind: str = "") -> list[dict[str, Any]]:
    """The newest audit documents of one schema (duplicates collapsed with FINAL), newest first."""
    sql = (f"SELECT Document AS document FROM {tables.events} FINAL WHERE Schema = {{schema:String}} "
           "AND ({kind:String} = '' OR Kind = {kind:String}) ORDER BY Timestamp DESC, Id LIMIT {limit:UInt32}")
    rows = await _rows(store, sql, {"schema": schema, "kind": kind, "limit": limit})
    return [orjson.loads(row["document"]) for row in rows]


async def triggers(store: Store, tables: Tables, limit: int, kind: str = "") -> list[dict[str, Any]]:
    """Trigger events, each with `example_spans`: its example traces and spans resolved to sessions."""
    events = await documents(store, tables, TRIGGER_SCHEMA, limit, kind)
    trace_ids = sorted({t for event in events for t in _examples(event)[0]})
    span_ids = sorted({s for event in events for s in _examples(event)[1]})
    located = await _locate(store, tables, trace_ids, span_ids)
    for event in events:
        traces, spans = _examples(event)
        found = [located["spans"][s] for s in spans if s in located["spans"]]
        covered = {item["trace_id"] for item in found}
        found += [{"trace_id": t, "span_id": "", "session": located["traces"][t]}
                  for t in traces if t in located["traces"] and t not in covered]
        event["example_spans"] = found
    return events


def _examples(event: dict[str, Any]) -> tuple[list[str], list[str]]:
    examples = event.get("examples") or {}
    return list(examples.get("trace_ids") or []), list(examples.get("span_ids") or [])


async def _locate(store: Store, tables: Tables, trace_ids: list[str], span_ids: list[str]) -> dict[str, dict]:
    """trace id → its session, span id → {trace_id, span_id, session}, for the ids that are stored."""
    if not trace_ids:
        return {"traces": {}, "spans": {}}
    sessions = await trace_sessions(store, tables, trace_ids)
    spans: dict[str, dict] = {}
    if span_ids and sessions:
        sql = (f"SELECT TraceId AS trace_id, SpanId AS span_id FROM {tables.traces} "
               "WHERE TraceId IN {traces:Array(String)} AND SpanId IN {spans:Array(String)}")
        for row in await _rows(store, sql, {"traces": sorted(sessions), "spans": span_ids}):
            spans[row["span_id"]] = {**row, "session": sessions[row["trace_id"]]}
    return {"traces": sessions, "spans": spans}


async def trace_sessions(store: Store, tables: Tables, trace_ids: list[str]) -> dict[str, str]:
    """trace id → its session, for the stored traces among `trace_ids` (a session its spans name
    wins over the trace's own id)."""
    if not trace_ids:
        return {}
    sql = (f"SELECT TraceId AS trace_id, argMax(Session, Session != TraceId) AS session FROM {tables.session_traces} "
           "WHERE TraceId IN {traces:Array(String)} GROUP BY TraceId")
    return {row["trace_id"]: row["session"] for row in await _rows(store, sql, {"traces": trace_ids})}


async def decisions(store: Store, tables: Tables, limit: int) -> list[dict[str, Any]]:
    return await documents(store, tables, DECISION_SCHEMA, limit)


def current_state(decided: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest decision per (family, target): each breaker's, throttle's, canary's, alert's state now."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in sorted(decided, key=lambda d: str(d.get("decided_at", ""))):
        family = FAMILIES.get(str(doc.get("action")), "other")
        target = doc.get("target")
        key = target if isinstance(target, str) else orjson.dumps(target, option=orjson.OPT_SORT_KEYS).decode()
        latest[(family, key)] = {"family": family, "target": target, "action": doc.get("action"),
                                 "state": doc.get("state"), "decided_at": doc.get("decided_at"),
                                 "reason": doc.get("reason"), "cause": doc.get("cause"), "id": doc.get("id")}
    return sorted(latest.values(), key=lambda item: (item["family"], str(item["target"])))


# -- sessions -----------------------------------------------------------------------------------

# Each summary row under its session: a row counted under a trace id whose trace later named a
# real session (the upgrades table: small) is that session's. A mapping of two arrays, not a
# join: the summary's columns are then read only where a statement uses them.
FOLDED = """SELECT transform(Session, upgraded.1, upgraded.2, Session) AS session, *
FROM {sessions}"""
UPGRADED = """(SELECT (groupArray(TraceId), groupArray(real))
             FROM (SELECT TraceId, max(Session) AS real FROM {upgrades} GROUP BY TraceId)) AS upgraded"""
# The page's sessions: the newest that pass the filter, chosen on the last end alone (and the
# columns the filter asks for) ...
PAGE_SESSIONS = """SELECT session, min(Start) AS start_ns, max(End) AS end_ns{listed}
FROM ({folded})
GROUP BY session
HAVING {having}
ORDER BY end_ns DESC, session
LIMIT {{limit:UInt32}}"""
# ... then every total of those sessions only (the array unions and distinct trace counts are
# the costly merges), in one statement: each read waits for the engine's reader thread.
PAGE = """WITH {upgraded}
SELECT session, min(Start) AS start_ns, max(End) AS end_ns, sum(Spans) AS spans, sum(Errors) AS errors,
    sum(TokensIn) AS tokens_in, sum(TokensOut) AS tokens_out, sum(Cost) AS cost,
    groupUniqArrayArray(Services) AS services, groupUniqArrayArray(Agents) AS agents,
    uniqExactMerge(Traces) AS traces, {triggers} AS triggers
FROM ({folded})
WHERE session IN (SELECT session FROM ({page}))
GROUP BY session
ORDER BY end_ns DESC, session"""
TRIGGERS = "transform(session, {fired_sessions:Array(String)}, {fired_counts:Array(UInt64)}, toUInt64(0))"
# The filter's parts, each used only when asked for (so the page needs no array union otherwise).
WINDOW = "start_ns <= {until:Int64} AND end_ns >= {since:Int64}"
FILTERS = {"service": ("has(f_services, {service:String})", ", groupUniqArrayArray(Services) AS f_services"),
           "agent": ("has(f_agents, {agent:String})", ", groupUniqArrayArray(Agents) AS f_agents"),
           "errors": ("f_errors > 0", ", sum(Errors) AS f_errors"),
           "min_cost": ("f_cost >= {min_cost:Float64}", ", sum(Cost) AS f_cost"),
           "has_trigger": (TRIGGERS + " > 0", "")}
EXAMPLES = ("SELECT Id AS id, JSONExtract(Document, 'examples', 'trace_ids', 'Array(String)') AS traces "
            "FROM {events} FINAL WHERE Schema = {{schema:String}} ORDER BY Timestamp DESC, Id LIMIT {{limit:UInt32}}")
RECHECK_SECONDS = 30.0  # how long a trace found under its own id is taken as its own session


class TraceLocator:
    """trace id → its session (as `trace_sessions` finds it), remembered for the sessions list's
    trigger counts, which would otherwise look up the examples of the newest trigger events in the
    session → traces lookup (a read of the whole table: trace ids are random) at every list.

    A trace found under a real session keeps it (a trace's session key does not change); one found
    under its own id, or not stored yet, is asked again after `recheck` seconds, as its root may
    name a session later. At most `size` traces are remembered, the least recently used forgotten."""

    def __init__(self, size: int = 20_000, recheck: float = RECHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.recheck, self.clock = size, recheck, clock
        self._known: OrderedDict[str, tuple[str, float]] = OrderedDict()  # trace → (session or "", good until)

    async def sessions(self, store: Store, tables: Tables, trace_ids: list[str]) -> dict[str, str]:
        now = self.clock()
        out: dict[str, str] = {}
        ask = []
        for trace in trace_ids:
            known = self._known.get(trace)
            if known is None or known[1] <= now:
                ask.append(trace)
                continue
            self._known.move_to_end(trace)
            if known[0]:
                out[trace] = known[0]
        found = await trace_sessions(store, tables, ask) if ask else {}
        for trace in ask:
            session = found.get(trace, "")
            self._known[trace] = (session, float("inf") if session not in ("", trace) else now + self.recheck)
            self._known.move_to_end(trace)
            if session:
                out[trace] = session
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return out


async def fired(store: Store, tables: Tables, locator: TraceLocator, trigger_limit: int) -> dict[str, int]:
    """Per session, how many of the newest `trigger_limit` trigger events name one of its traces
    among their examples (none while no events pipeline has written the audit table)."""
    sql = EXAMPLES.format(events=tables.events)
    events = await _rows(store, sql, {"schema": TRIGGER_SCHEMA, "limit": trigger_limit})
    located = await locator.sessions(store, tables, sorted({trace for event in events for trace in event["traces"]}))
    counts: dict[str, int] = {}
    for event in events:
        for session in {located[trace] for trace in event["traces"] if trace in located}:
            counts[session] = counts.get(session, 0) + 1
    return counts


def page_statement(tables: Tables, where: SessionFilter) -> str:
    """The sessions list's statement for the filter `where` (its values are bound parameters)."""
    used = [name for name, on in (("service", where.service), ("agent", where.agent), ("errors", where.errors),
                                  ("min_cost", where.min_cost > 0), ("has_trigger", where.has_trigger)) if on]
    having = " AND ".join([WINDOW, *(FILTERS[name][0] for name in used)])
    folded = FOLDED.format(sessions=tables.sessions)
    page = PAGE_SESSIONS.format(folded=folded, listed="".join(FILTERS[name][1] for name in used), having=having)
    return PAGE.format(upgraded=UPGRADED.format(upgrades=tables.upgrades), page=page, folded=folded,
                       triggers=TRIGGERS)


async def sessions(store: Store, tables: Tables, where: SessionFilter, trigger_limit: int,
                   locator: TraceLocator | None = None) -> tuple[list[dict[str, Any]], bool]:
    """One row per session active in the window, newest last activity first, with the number of
    the newest `trigger_limit` trigger events whose example traces fall in it; and whether more
    than `where.limit` matched."""
    counts = await fired(store, tables, locator or TraceLocator(), trigger_limit)
    params = {"since": where.since_ns, "until": min(where.until_ns, MAX_NS), "service": where.service,
              "agent": where.agent, "min_cost": where.min_cost, "limit": where.limit + 1,
              "fired_sessions": list(counts), "fired_counts": list(counts.values())}
    rows = await _rows(store, page_statement(tables, where), params)
    out = [{**row, "services": sorted(row["services"]), "agents": sorted(row["agents"]),
            "duration_ns": row["end_ns"] - row["start_ns"], "cost": round(row["cost"], 10)}
           for row in rows[:where.limit]]
    return out, len(rows) > where.limit


# The traces of session {id:String} and the first and last start of their spans (all of them:
# a trace's spans that came before its session key are under the trace's own id).
SESSION_TRACES = ("SELECT TraceId, min(Start) AS first, max(End) AS last FROM {session_traces} "
                  "WHERE TraceId IN (SELECT TraceId FROM {session_traces} WHERE Session = {{id:String}}) "
                  "GROUP BY TraceId")


# The summary's fingerprint of a session view: its rows and those its traces counted under
# their own ids. Any span stored in (or erased from) the session changes it.
# One key set (not an OR), so both reads are primary-key ranges.
SESSION_FINGERPRINT = """SELECT sum(Spans) AS spans, min(Start) AS start, max(End) AS end, count() AS parts
FROM {sessions}
WHERE Session IN (SELECT TraceId FROM {session_traces} WHERE Session = {{id:String}} UNION ALL SELECT {{id:String}})"""
CACHED_SESSIONS = 8  # answers kept: a UI re-reading a few open sessions


class SessionCache:
    """Recent session answers, serialised, with the summary fingerprint they were built at.

    A UI re-reads an open session every few seconds; while nothing was stored in it, its answer
    is the one already built and serialised (a 2,000-span session is ~1.5 MB: about 100 ms of the
    process's CPU and GIL to shape, 7 ms to serialise, time ingest shares), checked by one
    primary-key read of the summary."""

    def __init__(self, size: int = CACHED_SESSIONS) -> None:
        self.size = size
        self._answers: dict[tuple[str, str, int], tuple[dict[str, Any], bytes | None]] = {}

    async def body(self, store: Store, tables: Tables, session_id: str, limit: int) -> bytes | None:
        """The session's answer as JSON (None: no stored span has that session)."""
        sql = SESSION_FINGERPRINT.format(sessions=tables.sessions, session_traces=tables.session_traces)
        rows = await _rows(store, sql, {"id": session_id})
        fingerprint = rows[0] if rows else {}
        key = (tables.traces, session_id, limit)
        cached = self._answers.pop(key, None)
        if cached is not None and cached[0] == fingerprint and fingerprint.get("spans"):
            self._answers[key] = cached  # most recent last
            return cached[1]
        answer = await session(store, tables, session_id, limit)
        body = None if answer is None else orjson.dumps(answer)
        self._answers[key] = (fingerprint, body)
        while len(self._answers) > self.size:
            del self._answers[next(iter(self._answers))]
        return body


async def session(store: Store, tables: Tables, session_id: str, limit: int) -> dict[str, Any] | None:
    """Every span of every trace of the session, in start order, with subtree totals (the first
    `limit` spans, and `truncated`, when there are more)."""
    sql = f"""WITH ids AS ({SESSION_TRACES.format(session_traces=tables.session_traces)})
    SELECT TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_id, SpanName AS name,
        SpanKind AS span_kind, ServiceName AS service, toUnixTimestamp64Nano(Timestamp) AS start_ns,
        Duration AS duration_ns, StatusCode AS status, StatusMessage AS status_message,
        mapFilter((k, v) -> has({{keys:Array(String)}}, k), SpanAttributes) AS attributes,
        arrayFilter(e -> startsWith(e.1, 'gen_ai.') OR e.1 = 'exception',
            arrayZip(Events.Name, arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp), Events.Attributes))
            AS events
    FROM {tables.traces}
    WHERE TraceId IN (SELECT TraceId FROM ids)
      AND Timestamp >= (SELECT min(first) FROM ids) AND Timestamp <= (SELECT max(last) FROM ids)
    ORDER BY start_ns, span_id
    LIMIT {{limit:UInt32}}"""
    rows = await _rows(store, sql, {"keys": list(SPAN_KEYS), "id": session_id, "limit": limit + 1})
    if not rows:
        return None
    truncated = len(rows) > limit
    spans = [_span(row) for row in rows[:limit]]
    roll_up(spans)
    start = min(span["start_ns"] for span in spans)
    end = max(span["start_ns"] + span["duration_ns"] for span in spans)
    totals = {key: sum(span[key] for span in spans) for key in ("tokens_in", "tokens_out", "errors")}
    return {"session": session_id, "start_ns": start, "end_ns": end, "duration_ns": end - start,
            "spans": spans, "span_count": len(spans), "truncated": truncated,
            "traces": sorted({span["trace_id"] for span in spans}),
            "services": sorted({span["service"] for span in spans}),
            "agents": sorted({span["agent"] for span in spans if span["agent"]}),
            "cost": round(sum(span["cost"] for span in spans), 10), **totals}


def _span(row: dict[str, Any]) -> dict[str, Any]:
    attrs = row.pop("attributes")
    events = [{"name": name, "time_ns": time_ns, "attributes": event_attrs}
              for name, time_ns, event_attrs in row.pop("events")]
    error = row["status"] == "Error"
    return {**row, "kind": span_kind(attrs, row["span_kind"]), "attributes": attrs, "events": events,
            "agent": attrs.get("gen_ai.agent.name", ""), "tool": attrs.get("gen_ai.tool.name", ""),
            "model": attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model", ""),
            "operation": attrs.get("gen_ai.operation.name", ""),
            "tokens_in": _int(attrs.get(TOKENS_IN)), "tokens_out": _int(attrs.get(TOKENS_OUT)),
            "cost": _float(attrs.get(COST)), "errors": int(error), "error": error,
            "messages": messages(attrs, events)}


def roll_up(spans: list[dict[str, Any]]) -> None:
    """Give each span `total`: its own tokens, cost and errors plus its descendants' (same trace);
    `depth` and `children` (span ids). A span whose parent is not stored is a root.

    One walk from the roots gives every span its depth in pre-order; the totals are then added up
    that order backwards, children before parents (no recursion: deep agent recursions must not
    hit Python's recursion limit). About 5 µs a span."""
    stored = {(span["trace_id"], span["span_id"]) for span in spans}
    children: dict[tuple[str, str], list[dict[str, Any]]] = {}
    roots = []
    for span in spans:
        parent = (span["trace_id"], span["parent_id"])
        if span["parent_id"] and span["parent_id"] != span["span_id"] and parent in stored:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    order: list[dict[str, Any]] = []
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        span, depth = stack.pop()
        span["depth"] = depth
        order.append(span)
        kids = children.get((span["trace_id"], span["span_id"]), [])
        span["children"] = [kid["span_id"] for kid in kids]
        stack.extend((kid, depth + 1) for kid in reversed(kids))
    for span in reversed(order):
        tokens_in, tokens_out, cost, errors = span["tokens_in"], span["tokens_out"], span["cost"], span["errors"]
        for kid in children.get((span["trace_id"], span["span_id"]), ()):
            total = kid["total"]
            tokens_in += total["tokens_in"]
            tokens_out += total["tokens_out"]
            cost += total["cost"]
            errors += total["errors"]
        span["total"] = {"tokens_in": tokens_in, "tokens_out": tokens_out, "cost": round(cost, 10), "errors": errors}


def messages(attrs: dict[str, str], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation turns a span carries: `gen_ai.input.messages` / `output.messages` (JSON
    arrays of {role, parts}), the older per-message events, and tool call arguments/results."""
    out: list[dict[str, Any]] = []
    for key, direction in (("gen_ai.input.messages", "in"), ("gen_ai.output.messages", "out")):
        for item in _json_list(attrs.get(key)):
            if isinstance(item, dict):
                out.append({"direction": direction, "role": str(item.get("role", "")), "text": _parts_text(item)})
    for event in events:
        name = event["name"]
        if name.startswith("gen_ai.") and (name.endswith(".message") or name == "gen_ai.choice"):
            role = name[len("gen_ai."):-len(".message")] if name.endswith(".message") else "assistant"
            body = event["attributes"]
            text = body.get("content") or body.get("message") or orjson.dumps(body).decode()
            out.append({"direction": "out" if name == "gen_ai.choice" else "in", "role": role, "text": str(text)})
    if "gen_ai.tool.call.arguments" in attrs:
        out.append({"direction": "in", "role": "tool_call", "text": attrs["gen_ai.tool.call.arguments"]})
    if "gen_ai.tool.call.result" in attrs:
        out.append({"direction": "out", "role": "tool_result", "text": attrs["gen_ai.tool.call.result"]})
    return out


def _json_list(text: str | None) -> list[Any]:
    if not text:
        return []
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [{"role": "", "parts": [{"type": "text", "content": text}]}]
    return value if isinstance(value, list) else [value]


def _parts_text(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if not isinstance(parts, list):
        return str(message.get("content", ""))
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            texts.append(str(part))
        elif part.get("type") == "text":
            texts.append(str(part.get("content", "")))
        elif part.get("type") == "tool_call":
            texts.append(f"→ {part.get('name', '')}({orjson.dumps(part.get('arguments')).decode()})")
        elif part.get("type") == "tool_call_response":
            texts.append(f"← {orjson.dumps(part.get('response')).decode()}")
        else:
            texts.append(orjson.dumps(part).decode())
    return "\n".join(texts)


# -- one span -----------------------------------------------------------------------------------

async def span_detail(store: Store, tables: Tables, trace_id: str, span_id: str) -> dict[str, Any] | None:
    """Everything stored of one span, values whole (the UI folds long ones)."""
    sql = f"""SELECT TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_id, TraceState AS trace_state,
        SpanName AS name, SpanKind AS span_kind, ServiceName AS service, ResourceAttributes AS resource,
        ScopeName AS scope_name, ScopeVersion AS scope_version, SpanAttributes AS attributes,
        toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns, StatusCode AS status,
        StatusMessage AS status_message,
        arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_times, Events.Name AS event_names,
        Events.Attributes AS event_attributes, Links.TraceId AS link_trace_ids, Links.SpanId AS link_span_ids,
        Links.TraceState AS link_trace_states, Links.Attributes AS link_attributes,
        (SELECT argMax(Session, Session != TraceId) FROM {tables.session_traces}
         WHERE TraceId = {{trace:String}}) AS session
    FROM {tables.traces} WHERE TraceId = {{trace:String}} AND SpanId = {{span:String}} LIMIT 1"""
    rows = await _rows(store, sql, {"trace": trace_id, "span": span_id})
    if not rows:
        return None
    row = rows[0]
    row["events"] = [{"time_ns": t, "name": n, "attributes": a} for t, n, a in
                     zip(row.pop("event_times"), row.pop("event_names"), row.pop("event_attributes"))]
    row["links"] = [{"trace_id": t, "span_id": s, "trace_state": ts, "attributes": a} for t, s, ts, a in
                    zip(row.pop("link_trace_ids"), row.pop("link_span_ids"), row.pop("link_trace_states"),
                        row.pop("link_attributes"))]
    row["kind"] = span_kind(row["attributes"], row["span_kind"])
    return row


# -- the agent graph ------------------------------------------------------------------------------

def _node(alias: str) -> str:
    """SQL: the graph node of a span: its agent, tool, model or external dependency, else its service."""
    attr = f"{alias}.SpanAttributes"
    op = f"{attr}['gen_ai.operation.name']"
    llm = ", ".join(f"'{name}'" for name in sorted(LLM_OPERATIONS))
    agents = ", ".join(f"'{name}'" for name in sorted(AGENT_OPERATIONS))
    host = (f"coalesce(nullIf({attr}['server.address'], ''), nullIf(domain({attr}['url.full']), ''), "
            f"nullIf(domain({attr}['http.url']), ''), {alias}.ServiceName)")
    return (f"multiIf({op} IN ({agents}) AND {attr}['gen_ai.agent.name'] != '', "
            f"concat('agent:', {attr}['gen_ai.agent.name']), "
            f"{op} = 'execute_tool' AND {attr}['gen_ai.tool.name'] != '', concat('tool:', {attr}['gen_ai.tool.name']), "
            f"{op} IN ({llm}), "
            f"concat('model:', if({attr}['gen_ai.request.model'] != '', {attr}['gen_ai.request.model'], "
            f"{attr}['gen_ai.response.model'])), "
            f"{attr}['db.system'] != '' OR {attr}['db.system.name'] != '', "
            f"concat('db:', if({attr}['db.system'] != '', {attr}['db.system'], {attr}['db.system.name'])), "
            f"{attr}['http.request.method'] != '' OR {attr}['http.method'] != '', concat('http:', {host}), "
            f"concat('service:', {alias}.ServiceName))")


async def graph(store: Store, tables: Tables, since_ns: int, until_ns: int, limit: int) -> dict[str, Any]:
    """Agents, tools, models and dependencies as nodes; an edge per (parent node, child node) with
    its call count, errors (the child's status) and error rate, from the stored parent/child links."""
    window = ("Timestamp >= fromUnixTimestamp64Nano({since:Int64}) "
              "AND Timestamp <= fromUnixTimestamp64Nano({until:Int64})")
    sql = f"""SELECT parent.node AS source, child.node AS target, count() AS calls,
        countIf(child.StatusCode = 'Error') AS errors
    FROM (SELECT TraceId, ParentSpanId, StatusCode, {_node('c')} AS node FROM {tables.traces} AS c
          WHERE ParentSpanId != '' AND {window}) AS child
    INNER JOIN (SELECT TraceId, SpanId, {_node('p')} AS node FROM {tables.traces} AS p WHERE {window}) AS parent
        ON child.TraceId = parent.TraceId AND child.ParentSpanId = parent.SpanId
    WHERE source != target
    GROUP BY source, target ORDER BY calls DESC, source, target LIMIT {{limit:UInt32}}"""
    rows = await _rows(store, sql, {"since": since_ns, "until": min(until_ns, MAX_NS), "limit": limit})
    nodes: dict[str, dict[str, Any]] = {}
    for row in rows:
        row["error_rate"] = round(row["errors"] / row["calls"], 4) if row["calls"] else 0.0
        for key in (row["source"], row["target"]):
            kind, _, name = key.partition(":")
            nodes.setdefault(key, {"id": key, "kind": kind, "name": name, "calls_in": 0, "errors_in": 0})
        nodes[row["target"]]["calls_in"] += row["calls"]
        nodes[row["target"]]["errors_in"] += row["errors"]
    return {"nodes": sorted(nodes.values(), key=lambda n: (n["kind"], n["name"])), "edges": rows}


# -- live tail ------------------------------------------------------------------------------------

async def tail(store: Store, tables: Tables, service: str, session_id: str, since_ns: int, limit: int) -> list[dict]:
    """The newest spans (by start) of a service and/or session that started at `since_ns` or later,
    newest first; the UI polls it and shows the spans it has not seen."""
    match = f"""Timestamp >= fromUnixTimestamp64Nano({{since:Int64}})
      AND ({{service:String}} = '' OR ServiceName = {{service:String}})
      AND ({{session:String}} = '' OR TraceId IN (SELECT TraceId FROM {tables.session_traces}
                                                WHERE Session = {{session:String}}))"""
    # The n-th newest start first (the Timestamp column alone), so only the spans from there on
    # are read with their attributes, not every span since `since`.
    sql = f"""WITH (SELECT min(t) FROM (SELECT Timestamp AS t FROM {tables.traces} WHERE {match}
                   ORDER BY t DESC LIMIT {{limit:UInt32}})) AS cutoff
    SELECT TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_id, SpanName AS name,
        SpanKind AS span_kind, ServiceName AS service, toUnixTimestamp64Nano(Timestamp) AS start_ns,
        Duration AS duration_ns, StatusCode AS status, StatusMessage AS status_message,
        mapFilter((k, v) -> has({{keys:Array(String)}}, k), SpanAttributes) AS attributes
    FROM {tables.traces}
    WHERE {match} AND Timestamp >= cutoff
    ORDER BY start_ns DESC, span_id LIMIT {{limit:UInt32}}"""
    keys = ["gen_ai.operation.name", "gen_ai.agent.name", "gen_ai.tool.name", "gen_ai.request.model",
            TOKENS_IN, TOKENS_OUT, COST, "gen_ai.conversation.id", "http.request.method", "http.method", "url.full",
            "db.system", "openinference.span.kind"]
    rows = await _rows(store, sql, {"keys": keys, "since": since_ns, "service": service, "session": session_id,
                                    "limit": limit})
    for row in rows:
        attrs = row["attributes"]
        row.update(kind=span_kind(attrs, row["span_kind"]), tokens_in=_int(attrs.get(TOKENS_IN)),
                   tokens_out=_int(attrs.get(TOKENS_OUT)), cost=_float(attrs.get(COST)),
                   session=attrs.get("gen_ai.conversation.id") or row["trace_id"], error=row["status"] == "Error")
    return rows
