"""Per-session summaries kept at insert time, beside the `otel_traces` table.

The explorer's sessions list and session view would otherwise aggregate or scan the spans
table (its Map columns dominate: about 9 s for a 1 M-span store on 2 cores). Two
AggregatingMergeTree tables, each filled by a materialized view on every insert into the spans
table, answer them from a small table instead:

- `<traces>_sessions`, keyed by `(Session, ByTrace)`: per session its first start and last end
  (ns), spans, errors, input and output tokens, cost, services, agents and trace count. The rows
  of one session merge in the background; until they have, a reader merges them with
  `GROUP BY Session` (`min`/`max`/`sum`, `groupUniqArrayArray`, `uniqExactMerge`), never `FINAL`;
- `<traces>_session_traces`, keyed by `(Session, TraceId)`, with a bloom filter on `TraceId`:
  each trace of a session and its first and last span start, so a session's spans are read by
  trace id (the spans table's `idx_trace_id` bloom filter) within that time range, and a trace's
  session is found by trace id.

A span's session is its `gen_ai.conversation.id` (the canonical key the `genai` processor
writes); a span without one, or whose value is its own trace id (the processor's fallback for
a GenAI trace whose session key has not been seen yet), is counted under its trace id with
`ByTrace = 1`. When later spans of that trace bring the real session, the trace has rows under
both, and a third table says so:

- `<traces>_session_upgrades`, keyed by `TraceId`: a trace counted under its own id that also
  has spans naming a real session, and that session. Its view writes a row when an insert
  brings a real session for a trace whose `ByTrace` row is already stored (a look-up of the
  block's trace ids in the sessions table's primary key: a few granules, not a scan), or brings
  both kinds of span of one trace. It stays small: only traces whose root came late.

The reader folds a `ByTrace` row into the session the upgrades table names for its trace
(extensions/explorer/queries.py), so the totals are the trace-level answer the spans give,
without reading the session → traces lookup (as large as the traces stored) on every list.
Not folded: spans counted under their trace id that are stored *after* the trace's real
session (the processor forgot the trace, e.g. across a restart), or inserted at the same time
by another daemon on a shared server; they stay a session of their own, as their spans say.

Stores that predate the summaries: every statement is `IF NOT EXISTS`, and before creating each
materialized view the statements fill its table from the spans already stored, only when that
view does not exist yet (a scalar check on `system.tables`, so later starts read nothing). The
view is created right after, so spans inserted by this daemon are counted once. With several
daemons writing to one ClickHouse server, a span another daemon inserts during that first
start's backfill may be missed; if a start is killed during the backfill, rebuild by hand:
`TRUNCATE` the three tables and run `backfill_statements(..., only_if_new=False)`, in its order.
Retention follows the spans' `ttl` (on the last time seen).
"""
from __future__ import annotations

from pipeline.clickhouse.schema import deduplication_statements, modify_ttl, qualified, quote, ttl_clause

SESSIONS_SUFFIX = "_sessions"
TRACES_SUFFIX = "_session_traces"
UPGRADES_SUFFIX = "_session_upgrades"
CONVERSATION_KEY = "gen_ai.conversation.id"
# Spans with the session each one names ('' = none, or its own trace id), for the views' GROUP BY.
_SPAN_SESSION = f"""SELECT *, SpanAttributes['{CONVERSATION_KEY}'] AS named,
        if(named != '' AND named != TraceId, named, '') AS conversation
    FROM {{table}}{{where}}"""

_SESSIONS_TABLE = """CREATE TABLE IF NOT EXISTS {target} (
    Session String CODEC(ZSTD(1)),
    ByTrace UInt8,
    Start SimpleAggregateFunction(min, Int64),
    End SimpleAggregateFunction(max, Int64),
    LastSeen SimpleAggregateFunction(max, DateTime) CODEC(Delta, ZSTD(1)),
    Spans SimpleAggregateFunction(sum, UInt64),
    Errors SimpleAggregateFunction(sum, UInt64),
    TokensIn SimpleAggregateFunction(sum, UInt64),
    TokensOut SimpleAggregateFunction(sum, UInt64),
    Cost SimpleAggregateFunction(sum, Float64),
    Services SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    Agents SimpleAggregateFunction(groupUniqArrayArray, Array(String)),
    Traces AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree()
PARTITION BY toStartOfWeek(LastSeen)
ORDER BY (Session, ByTrace)
{ttl}
SETTINGS index_granularity = 1024"""

_SESSIONS_SELECT = """SELECT if(conversation != '', conversation, TraceId) AS Session,
    toUInt8(conversation = '') AS ByTrace,
    min(toUnixTimestamp64Nano(Timestamp)) AS Start,
    max(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS End,
    max(toDateTime(Timestamp)) AS LastSeen,
    count() AS Spans,
    countIf(StatusCode = 'Error') AS Errors,
    sum(toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens'])) AS TokensIn,
    sum(toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens'])) AS TokensOut,
    sum(toFloat64OrZero(SpanAttributes['gen_ai.usage.cost'])) AS Cost,
    groupUniqArray(toString(ServiceName)) AS Services,
    groupUniqArrayIf(SpanAttributes['gen_ai.agent.name'], SpanAttributes['gen_ai.agent.name'] != '') AS Agents,
    uniqExactState(TraceId) AS Traces
FROM ({spans})
GROUP BY Session, ByTrace"""

_TRACES_TABLE = """CREATE TABLE IF NOT EXISTS {target} (
    Session String CODEC(ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime64(9)) CODEC(Delta, ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime64(9)) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = AggregatingMergeTree()
PARTITION BY toStartOfWeek(toDateTime(End))
ORDER BY (Session, TraceId)
{ttl}
SETTINGS index_granularity = 1024"""

_TRACES_SELECT = """SELECT if(conversation != '', conversation, TraceId) AS Session, TraceId,
    min(Timestamp) AS Start, max(Timestamp) AS End
FROM ({spans})
GROUP BY Session, TraceId"""

_UPGRADES_TABLE = """CREATE TABLE IF NOT EXISTS {target} (
    TraceId String CODEC(ZSTD(1)),
    Session SimpleAggregateFunction(max, String),
    LastSeen SimpleAggregateFunction(max, DateTime) CODEC(Delta, ZSTD(1))
) ENGINE = AggregatingMergeTree()
PARTITION BY toStartOfWeek(LastSeen)
ORDER BY TraceId
{ttl}
SETTINGS index_granularity = 1024"""

# In the view every name of the spans table is the inserted block ({traces} too), so the
# sessions table is looked up by the block's trace ids that name a real session.
_UPGRADES_SELECT = """SELECT TraceId, max(conversation) AS Session, max(toDateTime(Timestamp)) AS LastSeen
FROM ({spans})
GROUP BY TraceId
HAVING Session != '' AND (countIf(conversation = '') > 0
    OR TraceId IN (SELECT s.Session FROM {sessions} AS s WHERE s.ByTrace = 1 AND s.Session IN (
        SELECT b.TraceId FROM {traces} AS b WHERE b.SpanAttributes['%s'] NOT IN ('', b.TraceId))))""" % CONVERSATION_KEY

# What the upgrades view would have written for the spans stored before it existed.
_UPGRADES_BACKFILL = """INSERT INTO {target} SELECT l.TraceId, max(l.Session), max(toDateTime(l.End))
FROM {lookup} AS l
WHERE l.Session != l.TraceId AND l.TraceId IN (SELECT s.Session FROM {sessions} AS s WHERE s.ByTrace = 1){absent}
GROUP BY l.TraceId"""

# A backfill groups the whole spans table: spill to disk rather than hit the engine's memory cap.
_BACKFILL_SETTINGS = "SETTINGS max_bytes_before_external_group_by = 67108864, max_threads = 1"


def summary_tables(database: str, table: str) -> tuple[str, str]:
    """The qualified sessions table and session → traces lookup table of spans table `table`."""
    return qualified(database, table + SESSIONS_SUFFIX), qualified(database, table + TRACES_SUFFIX)


def upgrades_table(database: str, table: str) -> str:
    """The qualified trace → real session table of spans table `table` (its late roots)."""
    return qualified(database, table + UPGRADES_SUFFIX)


def _view_absent(database: str, view: str) -> str:
    """SQL: true while the view `view` (unquoted name) does not exist; constant once evaluated."""
    db = database.replace("\\", "\\\\").replace("'", "\\'")
    name = view.replace("\\", "\\\\").replace("'", "\\'")
    return f"(SELECT count() FROM system.tables WHERE database = '{db}' AND name = '{name}') = 0"


def _parts(database: str, table: str) -> list[tuple[str, str, str, str]]:
    """(target table, its view's unquoted name, the view's SELECT, the table's CREATE) of both."""
    sessions, lookup = summary_tables(database, table)
    return [(sessions, table + SESSIONS_SUFFIX + "_mv", _SESSIONS_SELECT, _SESSIONS_TABLE),
            (lookup, table + TRACES_SUFFIX + "_mv", _TRACES_SELECT, _TRACES_TABLE)]


def backfill_statements(database: str, table: str, only_if_new: bool = True) -> list[str]:
    """INSERT ... SELECT of the three summaries from the spans stored, in order (the upgrades from
    the other two); with `only_if_new`, each reads nothing once its materialized view exists (so
    it runs at every start but fills only once)."""
    traces = qualified(database, table)
    out = []
    for target, view, select, _ in _parts(database, table):
        where = f" WHERE {_view_absent(database, view)}" if only_if_new else ""
        spans = _SPAN_SESSION.format(table=traces, where=where)
        out.append(f"INSERT INTO {target} {select.format(spans=spans)} {_BACKFILL_SETTINGS}")
    sessions, lookup = summary_tables(database, table)
    absent = f" AND {_view_absent(database, table + UPGRADES_SUFFIX + '_mv')}" if only_if_new else ""
    out.append(_UPGRADES_BACKFILL.format(target=upgrades_table(database, table), lookup=lookup, sessions=sessions,
                                         absent=absent) + f" {_BACKFILL_SETTINGS}")
    return out


def resummarise_statement(database: str, table: str, where: str) -> str:
    """INSERT ... SELECT of the sessions summary from the spans `where` selects (a condition on
    the spans table): after an erasure, the sessions it touched are summarised again from the
    spans left, once their summary rows are deleted (extensions/explorer/forget.py). The
    session → traces lookup needs no such step: its rows are per trace."""
    target, _, select, _ = _parts(database, table)[0]
    spans = _SPAN_SESSION.format(table=qualified(database, table), where=f" WHERE {where}")
    return f"INSERT INTO {target} {select.format(spans=spans)}"


def summary_statements(database: str, table: str, ttl_seconds: float = 0) -> list[str]:
    """Per summary (sessions, session → traces, upgrades): its table, its backfill for an older
    store, its view; then the TTLs and deduplication windows."""
    traces = qualified(database, table)
    spans = _SPAN_SESSION.format(table=traces, where="")
    sessions, _ = summary_tables(database, table)
    views = [*_parts(database, table), (upgrades_table(database, table), table + UPGRADES_SUFFIX + "_mv",
                                        _UPGRADES_SELECT.replace("{sessions}", sessions), _UPGRADES_TABLE)]
    out: list[str] = []
    alters: list[str] = []
    for (target, view, select, create), backfill in zip(views, backfill_statements(database, table)):
        ttl = ttl_clause(ttl_seconds, *_TTL_ON[create])
        out += [create.format(target=target, ttl=ttl), backfill,
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {quote(database)}.{quote(view)} TO {target}\n"
                f"AS {select.format(spans=spans, traces=traces)}"]
        alters += [*modify_ttl(target, ttl), *deduplication_statements(target)]
    return out + alters


# The time each summary's retention counts from: its last span start (see ttl_clause).
_TTL_ON = {_SESSIONS_TABLE: ("LastSeen", "LastSeen"), _TRACES_TABLE: ("toDateTime(End)", "End"),
           _UPGRADES_TABLE: ("LastSeen", "LastSeen")}
