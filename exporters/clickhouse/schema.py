"""The `otel_traces` schema and its insert columns, shared by the `clickhouse` and `chdb` exporters.

The DDL is otelcol's clickhouseexporter schema (REFERENCE.md §6), so Grafana's ClickHouse
plugin reads the tables: the `otel_traces` MergeTree table, the `otel_traces_trace_id_ts`
lookup table (first/last time of each trace) and the `otel_traces_trace_id_ts_mv`
materialized view that feeds it. Every statement is `IF NOT EXISTS`, so running the
schema again (each start) is harmless and never alters an existing table.

`insert_columns(SpanColumns)` gives the column-oriented insert data in `INSERT_COLUMNS`
order: plain lists taken from the batch's shared columnar view, no row dicts. The events
audit table (`agentdbg_decisions`) is in audit.py; tables.py picks the table per pipeline type.
"""
from __future__ import annotations

from typing import Sequence

from pipeline.columns import SpanColumns
from pipeline.traces import Traces

MAP = "Map(LowCardinality(String), String)"

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


def ttl_clause(ttl_seconds: float, time_expr: str) -> str:
    """otelcol's TTL expression: the largest whole unit (day, hour, minute, second); "" for 0."""
    seconds = int(ttl_seconds)
    if seconds <= 0:
        return ""
    for unit, size in (("Day", 86400), ("Hour", 3600), ("Minute", 60)):
        if seconds % size == 0:
            return f"TTL {time_expr} + toInterval{unit}({seconds // size})"
    return f"TTL {time_expr} + toIntervalSecond({seconds})"


def schema_statements(database: str, table: str, ttl_seconds: float = 0,
                      engine: str = "MergeTree()") -> list[str]:
    """CREATE DATABASE, the traces table, the trace-id lookup table and its materialized view."""
    traces = qualified(database, table)
    lookup = qualified(database, f"{table}_trace_id_ts")
    view = qualified(database, f"{table}_trace_id_ts_mv")
    return [
        f"CREATE DATABASE IF NOT EXISTS {quote(database)}",
        _TRACES_TABLE.format(table=traces, engine=engine, ttl=ttl_clause(ttl_seconds, "toDateTime(Timestamp)")),
        _LOOKUP_TABLE.format(lookup=lookup, ttl=ttl_clause(ttl_seconds, "toDateTime(Start)")),
        _LOOKUP_VIEW.format(view=view, lookup=lookup, table=traces),
    ]


def insert_columns(cols: SpanColumns) -> list[Sequence]:
    """The `INSERT_COLUMNS` data of one batch, column by column, from its shared view."""
    events, links = cols.events, cols.links
    duration = cols.duration_ns
    if duration and min(duration) < 0:  # end before start: UInt64 cannot hold it
        duration = [d if d > 0 else 0 for d in duration]
    return [
        cols.start_ns, cols.trace_id_hex, cols.span_id_hex, cols.parent_span_id_hex, cols.trace_state,
        cols.name, cols.kind_name, cols.service, cols.resource_attributes, cols.scope_name,
        cols.scope_version, cols.span_attributes, duration, cols.status_name, cols.status_message,
        events.timestamp_ns, events.name, events.attributes,
        links.trace_id_hex, links.span_id_hex, links.trace_state, links.attributes,
    ]


def traces_columns(batch: Traces) -> list[Sequence]:
    """`insert_columns` of a batch's shared columnar view (built once per batch)."""
    return insert_columns(batch.columns)
