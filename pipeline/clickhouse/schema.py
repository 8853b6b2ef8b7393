"""The `otel_traces` schema and its insert columns, shared by the `clickhouse` and `chdb` exporters.

The DDL is otelcol's clickhouseexporter schema, so Grafana's ClickHouse plugin reads the
tables: the `otel_traces` MergeTree table, the `otel_traces_trace_id_ts` lookup table
(first/last time of each trace) and the `otel_traces_trace_id_ts_mv` materialized view that
feeds it. Every CREATE is `IF NOT EXISTS`, so running the schema again (each start) is
harmless and never changes an existing table's columns. The retention (`ttl`) is the one
exception: with a `ttl` above 0 each start also runs `ALTER TABLE ... MODIFY TTL` on the spans
and lookup tables, so a table created earlier (without a TTL, or with another one) gets the
configured retention. `ttl: 0` adds no TTL but does not remove one a table already has
(`ALTER TABLE ... REMOVE TTL` does that, by hand).

Retries never store a row twice: every insert of the exporters carries an
`insert_deduplication_token` (the batch's content hash and the row range, stable across the
batch's retries and across a replay from the persistent queue or the batch processor's
write-ahead log after a restart: exporters/clickhousehelper/exporter.py), and every table an
insert reaches, directly or through a materialized view, keeps the tokens of its last
`DEDUPLICATION_WINDOW` inserts (`non_replicated_deduplication_window`, ClickHouse's insert
deduplication for non-replicated MergeTree tables). An insert whose token is in the window is
answered OK and stores nothing, in the table and in the views it feeds (checked on chDB 4.4,
ClickHouse 26.9). Each start sets the window on every table with `ALTER TABLE ... MODIFY
SETTING` (`deduplication_statements`), so tables created by an earlier version get it too.

`insert_columns(SpanColumns)` gives the column-oriented insert data in `INSERT_COLUMNS`
order: plain lists taken from the batch's shared columnar view, no row dicts. The events
audit table (`agentdbg_decisions`) is in audit.py; tables.py picks the table per pipeline type.

Limits: values a column cannot hold
-----------------------------------
OTLP accepts values the tables cannot store (any uint64 nanosecond time, an end before the
start). The rule, for every column, is to normalise at the storage boundary: a span is
always stored, with the nearest value its column can hold, and a span changed this way
gets the span attribute `agentdbg.clamped` listing the changed columns (comma-separated, in
the order below), so a reader sees the stored value is not what the agent sent. The receiver
refuses nothing for these values; the OTLP exporters and Kafka still carry them unchanged.
Checked against the engine (chDB 4.4, ClickHouse 26.9):

| column | type | what cannot be stored | stored instead |
|---|---|---|---|
| `Timestamp` | DateTime64(9) | a start after 2262-04-11 23:47:16.854775807 UTC (≥ 2^63 ns: the serializer refuses the whole insert) | that maximum time; marked `Timestamp` |
| `Duration` | UInt64 | end before start (negative) | 0; marked `Duration`. Otherwise the true `end − start` (of the unclamped times) always fits |
| `Events.Timestamp` | Array(DateTime64(9)) | an event time ≥ 2^63 ns (e.g. 2^64−1) | that maximum time; marked `Events.Timestamp` |
| strings, map keys and values | String, LowCardinality(String) | text that is not UTF-8 | never occurs: the protobuf decoder refuses such a request (HTTP 400 / INVALID_ARGUMENT) and a Python string with a lone surrogate cannot be set on a span. No length limit applies below the receiver's request size |
| attribute values | Map(…, String) | none: doubles are written as text (`NaN`, `+Inf`, `-Inf`), ints in decimal, bytes base64 | — |
| ids, `Links.*` | String, Array(String) | none: ids of any length are stored as hex | — |
| `SpanKind`, `StatusCode` | LowCardinality(String) | an enum value OTLP does not define | `""` |
| lookup `Start`, `End` | DateTime (seconds, to 2106-02-07 06:28:15) | a span time after 2106 | the engine saturates `toDateTime` at 2106-02-07 06:28:15 (checked); nothing fails |
| partitions | `PARTITION BY toDate(Timestamp)` | a batch spread over more than 100 days exceeds `max_partitions_per_insert_block` | every insert sets it to 0 (no limit): a clock-skewed or corrupted agent must not cost its batch |

Anything else the engine refuses about a row (a table constraint an operator added, a
future type) is isolated row by row and dead-lettered (exporters/helper/isolate.py).
"""
from __future__ import annotations

from typing import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.pdata.spans import SpanColumns
from pipeline.pdata.traces import Traces

MAP = "Map(LowCardinality(String), String)"
MAX_TIME_NS = 2**63 - 1  # DateTime64(9)'s last instant, 2262-04-11 23:47:16.854775807 UTC
CLAMPED = "agentdbg.clamped"
# Every insert lifts the partitions-per-insert limit (see "Limits" above).
INSERT_SETTINGS: dict[str, int] = {"max_partitions_per_insert_block": 0}
# Inserts whose deduplication tokens each table keeps (see above): far more than the inserts
# that can happen between an attempt and its retry, or between a store and its replay at start
# (the persistent queue and the write-ahead log replay before any new data).
DEDUPLICATION_WINDOW = 1000

# (name, type) in insert order. Nested columns are inserted as their flattened arrays.
INSERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("ParentSpanId", "String"),
    ("TraceState", "String"),
    ("SpanName", "LowCardinality(String)"),
    ("SpanKind", "LowCardinality(String)"),
    ("ServiceName", "LowCardinality(String)"),
    ("ResourceAttributes", MAP),
    ("ScopeName", "String"),
    ("ScopeVersion", "String"),
    ("SpanAttributes", MAP),
    ("Duration", "UInt64"),
    ("StatusCode", "LowCardinality(String)"),
    ("StatusMessage", "String"),
    ("Events.Timestamp", "Array(DateTime64(9))"),
    ("Events.Name", "Array(LowCardinality(String))"),
    ("Events.Attributes", f"Array({MAP})"),
    ("Links.TraceId", "Array(String)"),
    ("Links.SpanId", "Array(String)"),
    ("Links.TraceState", "Array(String)"),
    ("Links.Attributes", f"Array({MAP})"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in INSERT_COLUMNS)
COLUMN_TYPES: tuple[str, ...] = tuple(type_ for _, type_ in INSERT_COLUMNS)

_TRACES_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""

_LOOKUP_TABLE = """CREATE TABLE IF NOT EXISTS {lookup} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(Delta, ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = AggregatingMergeTree()
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
{ttl}
SETTINGS index_granularity = 8192"""

_LOOKUP_VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS {view}
TO {lookup}
AS SELECT
    TraceId,
    min(Timestamp) AS Start,
    max(Timestamp) AS End
FROM {table}
WHERE TraceId != ''
GROUP BY TraceId"""


def quote(identifier: str) -> str:
    """A ClickHouse identifier in backquotes, escaped."""
    return "`" + identifier.replace("\\", "\\\\").replace("`", "\\`") + "`"


def qualified(database: str, table: str) -> str:
    return f"{quote(database)}.{quote(table)}"


# Rows this late are never expired by a TTL: `toDateTime` of a later time (a clamped 2262 start,
# a lookup `Start` saturated at 2106) plus the TTL wraps past DateTime's end into the past, which
# would drop the row at once (checked on chDB 4.4). Far enough below 2106 for a TTL of years.
TTL_KEEP_FROM = "2100-01-01 00:00:00"


def ttl_clause(ttl_seconds: float, time_expr: str, column: str = "") -> str:
    """otelcol's TTL expression: the largest whole unit (day, hour, minute, second); "" for 0.

    With `column`, rows whose `column` is at or after TTL_KEEP_FROM are left alone (`WHERE`)."""
    seconds = int(ttl_seconds)
    if seconds <= 0:
        return ""
    where = f" WHERE {column} < '{TTL_KEEP_FROM}'" if column else ""
    for unit, size in (("Day", 86400), ("Hour", 3600), ("Minute", 60)):
        if seconds % size == 0:
            return f"TTL {time_expr} + toInterval{unit}({seconds // size}){where}"
    return f"TTL {time_expr} + toIntervalSecond({seconds}){where}"


def schema_statements(database: str, table: str, ttl_seconds: float = 0,
                      engine: str = "MergeTree()") -> list[str]:
    """CREATE DATABASE, the traces table, the trace-id lookup table and its materialized view."""
    traces = qualified(database, table)
    lookup = qualified(database, f"{table}_trace_id_ts")
    view = qualified(database, f"{table}_trace_id_ts_mv")
    traces_ttl = ttl_clause(ttl_seconds, "toDateTime(Timestamp)", "Timestamp")
    lookup_ttl = ttl_clause(ttl_seconds, "toDateTime(Start)", "Start")
    return [
        f"CREATE DATABASE IF NOT EXISTS {quote(database)}",
        _TRACES_TABLE.format(table=traces, engine=engine, ttl=traces_ttl),
        _LOOKUP_TABLE.format(lookup=lookup, ttl=lookup_ttl),
        _LOOKUP_VIEW.format(view=view, lookup=lookup, table=traces),
        *modify_ttl(traces, traces_ttl), *modify_ttl(lookup, lookup_ttl),
        *deduplication_statements(traces, lookup),
    ]


def deduplication_statements(*tables: str) -> list[str]:
    """The ALTERs that give each table (qualified and quoted) the deduplication window of its inserts."""
    return [f"ALTER TABLE {table} MODIFY SETTING non_replicated_deduplication_window = {DEDUPLICATION_WINDOW}"
            for table in tables]


def modify_ttl(table: str, ttl: str) -> list[str]:
    """The ALTER that gives a table created earlier the TTL `ttl` (a `ttl_clause`); none for ""."""
    return [f"ALTER TABLE {table} MODIFY {ttl}"] if ttl else []


def insert_columns(cols: SpanColumns) -> list[Sequence]:
    """The `INSERT_COLUMNS` data of one batch, column by column, from its shared view.

    Values a column cannot hold are clamped and the span marked (see "Limits"); checking costs
    one C-level pass per column, and only a batch that needs it is copied.
    """
    events, links = cols.events, cols.links
    marks: dict[int, list[str]] = {}
    start = _clamp_times(cols.start_ns, "Timestamp", marks)
    duration = _clamp_durations(cols.duration_ns, marks)
    event_times = _clamp_event_times(events.timestamp_ns, marks)
    return [
        start, cols.trace_id_hex, cols.span_id_hex, cols.parent_span_id_hex, cols.trace_state,
        cols.name, cols.kind_name, cols.service, cols.resource_attributes, cols.scope_name,
        cols.scope_version, _marked(cols.span_attributes, marks), duration, cols.status_name, cols.status_message,
        event_times, events.name, events.attributes,
        links.trace_id_hex, links.span_id_hex, links.trace_state, links.attributes,
    ]


def _clamp_times(times: list[int], column: str, marks: dict[int, list[str]]) -> list[int]:
    if not times or max(times) <= MAX_TIME_NS:
        return times
    for i, value in enumerate(times):
        if value > MAX_TIME_NS:
            marks.setdefault(i, []).append(column)
    return [min(value, MAX_TIME_NS) for value in times]


def _clamp_durations(durations: list[int], marks: dict[int, list[str]]) -> list[int]:
    if not durations or min(durations) >= 0:
        return durations
    for i, value in enumerate(durations):
        if value < 0:
            marks.setdefault(i, []).append("Duration")
    return [max(value, 0) for value in durations]


def _clamp_event_times(times: list[Sequence[int]], marks: dict[int, list[str]]) -> list[Sequence[int]]:
    if max(map(max, filter(None, times)), default=0) <= MAX_TIME_NS:
        return times
    out = list(times)
    for i, span_times in enumerate(times):
        if span_times and max(span_times) > MAX_TIME_NS:
            marks.setdefault(i, []).append("Events.Timestamp")
            out[i] = [min(value, MAX_TIME_NS) for value in span_times]
    return out


def _marked(attributes: list[dict[str, str]], marks: dict[int, list[str]]) -> list[dict[str, str]]:
    """The span attribute maps with `agentdbg.clamped` added where a value was clamped (copies:
    the batch's maps are shared with other readers)."""
    if not marks:
        return attributes
    out = list(attributes)
    for i, columns in marks.items():
        out[i] = {**attributes[i], CLAMPED: ",".join(columns)}
    return out


def traces_columns(batch: Traces) -> list[Sequence]:
    """`insert_columns` of a batch's shared columnar view (built once per batch)."""
    return insert_columns(batch.columns)


def select_spans(batch: Traces, indices: Sequence[int]) -> Traces:
    """The spans of `batch` at `indices` (column order), as sent, with their resources and scopes."""
    wanted = set(indices)
    out = ExportTraceServiceRequest()
    first = 0
    for rs in batch.message.resource_spans:
        target = None
        for scope in rs.scope_spans:
            picked = [span for index, span in enumerate(scope.spans, first) if index in wanted]
            first += len(scope.spans)
            if not picked:
                continue
            if target is None:
                target = out.resource_spans.add(schema_url=rs.schema_url)
                target.resource.CopyFrom(rs.resource)
            target_scope = target.scope_spans.add(schema_url=scope.schema_url)
            target_scope.scope.CopyFrom(scope.scope)
            target_scope.spans.extend(picked)
    return Traces.from_message(out, batch.received_at)
