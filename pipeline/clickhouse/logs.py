"""The `otel_logs` table (otelcol clickhouseexporter's logs schema) and its insert columns.

The `clickhouse` and `chdb` exporters named in a `logs` pipeline write here (tables.py picks the
table per pipeline type). The DDL is otelcol's: `TimestampTime` (a `DEFAULT` second-precision
copy of `Timestamp`) is the partition and sort key, `ORDER BY (ServiceName, TimestampTime,
Timestamp)`, bloom-filter skipping indexes on the trace id and on the keys and values of the
three attribute maps, a token index on `Body`, and the same retention (`ttl`) as the spans
table. `TraceId` and `SpanId` are lowercase hex, as in `otel_traces`, so
`otel_logs JOIN otel_traces USING (TraceId)` finds a log's spans.

Limits (the spans table's rule, schema.py "Limits": a record is always stored, with the nearest
value its column can hold, and one changed this way gets the log attribute `agentdbg.clamped`
naming the changed columns):

| column | what cannot be stored | stored instead |
|---|---|---|
| `Timestamp` | a time ≥ 2^63 ns | the table's last instant; marked `Timestamp` |
| `Timestamp` | 0 (unset; OTLP says use the observed time) | `observed_time_unix_nano`, as otelcol does; not marked |
| `SeverityNumber` | a value outside 0-255 (OTLP defines 0-24) | 0; marked `SeverityNumber` |
| `TraceFlags` | flags above 8 bits | the low 8 bits (the W3C trace flags, as otelcol stores them); not marked |
| `Body`, attributes | none: any AnyValue is stored as text (pdata/anyvalue.py), at any length | — |
"""
from __future__ import annotations

from typing import Sequence

from pipeline.clickhouse.schema import (
    CLAMPED,
    MAP,
    MAX_TIME_NS,
    deduplication_statements,
    modify_ttl,
    qualified,
    quote,
    ttl_clause,
)
from pipeline.pdata.anyvalue import any_value_text, attribute_map
from pipeline.pdata.logs import Logs, iter_log_records, select_log_records
from pipeline.pdata.spans import SERVICE_NAME

# (name, type) in insert order; TimestampTime is the table's DEFAULT.
LOGS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Timestamp", "DateTime64(9)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("TraceFlags", "UInt8"),
    ("SeverityText", "LowCardinality(String)"),
    ("SeverityNumber", "UInt8"),
    ("ServiceName", "LowCardinality(String)"),
    ("Body", "String"),
    ("ResourceSchemaUrl", "LowCardinality(String)"),
    ("ResourceAttributes", MAP),
    ("ScopeSchemaUrl", "LowCardinality(String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "LowCardinality(String)"),
    ("ScopeAttributes", MAP),
    ("LogAttributes", MAP),
    ("EventName", "String"),
)

_LOGS_TABLE = """CREATE TABLE IF NOT EXISTS {table} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {engine}
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
{ttl}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def logs_statements(database: str, table: str, ttl_seconds: float = 0, engine: str = "MergeTree()") -> list[str]:
    """CREATE DATABASE and the logs table, with the TTL (also given to a table created earlier)."""
    logs = qualified(database, table)
    # Kept from expiry by `Timestamp` (DateTime64), not TimestampTime: a clamped 2262 time wraps
    # as a DateTime (schema.py: TTL_KEEP_FROM).
    ttl = ttl_clause(ttl_seconds, "TimestampTime", "Timestamp")
    return [f"CREATE DATABASE IF NOT EXISTS {quote(database)}",
            _LOGS_TABLE.format(table=logs, engine=engine, ttl=ttl), *modify_ttl(logs, ttl),
            *deduplication_statements(logs)]


def logs_columns(batch: Logs) -> list[Sequence]:
    """The `LOGS_COLUMNS` data of one batch, column by column, clamped by the rules above."""
    columns: list[list] = [[] for _ in LOGS_COLUMNS]
    (timestamp, trace_id, span_id, flags, severity_text, severity_number, service, body, resource_url,
     resource_attributes, scope_url, scope_name, scope_version, scope_attributes, log_attributes,
     event_name) = columns
    resources: dict[int, tuple[dict[str, str], str]] = {}
    scopes: dict[int, dict[str, str]] = {}
    for rl, scope, record in iter_log_records(batch.message):
        if id(rl) not in resources:  # one dict per resource and scope, shared by their rows
            attributes = attribute_map(rl.resource.attributes)
            resources[id(rl)] = (attributes, attributes.get(SERVICE_NAME, ""))
        if id(scope) not in scopes:
            scopes[id(scope)] = attribute_map(scope.scope.attributes)
        attributes, service_name = resources[id(rl)]
        marks: list[str] = []
        timestamp.append(_time(record.time_unix_nano or record.observed_time_unix_nano, marks))
        severity_number.append(_severity(record.severity_number, marks))
        trace_id.append(record.trace_id.hex())
        span_id.append(record.span_id.hex())
        flags.append(record.flags & 0xFF)
        severity_text.append(record.severity_text)
        service.append(service_name)
        body.append(any_value_text(record.body))
        resource_url.append(rl.schema_url)
        resource_attributes.append(attributes)
        scope_url.append(scope.schema_url)
        scope_name.append(scope.scope.name)
        scope_version.append(scope.scope.version)
        scope_attributes.append(scopes[id(scope)])
        record_attributes = attribute_map(record.attributes)
        if marks:
            record_attributes[CLAMPED] = ",".join(marks)
        log_attributes.append(record_attributes)
        event_name.append(record.event_name)
    return list(columns)


def _time(value: int, marks: list[str]) -> int:
    if value > MAX_TIME_NS:
        marks.append("Timestamp")
        return MAX_TIME_NS
    return value


def _severity(value: int, marks: list[str]) -> int:
    if 0 <= value <= 0xFF:
        return value
    marks.append("SeverityNumber")
    return 0


def select_logs(batch: Logs, indices: Sequence[int]) -> Logs:
    """The records of `batch` at `indices` (row order), as sent, with their resources and scopes."""
    return select_log_records(batch, list(indices))
