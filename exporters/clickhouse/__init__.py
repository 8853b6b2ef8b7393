"""`clickhouse`: spans into ClickHouse over its HTTP interface (otelcol clickhouseexporter schema).

Each batch is inserted as one column-oriented `INSERT ... FORMAT Native` (clickhouse-connect's
async client) built from the batch's shared `SpanColumns`: no row dicts, no JSON. With
`create_schema` the exporter creates the database, the `otel_traces` table, the
`otel_traces_trace_id_ts` lookup table and its materialized view (`pipeline/clickhouse/schema.py`,
the same DDL the `chdb` exporter uses) before its first insert.

In an `events` pipeline it writes trigger events and safety decisions, one row per document, to
the audit table `events_table_name` (`agentdbg_decisions`, a ReplacingMergeTree keyed so that a
redelivered document collapses; pipeline/clickhouse/audit.py), with the same insert path and
the same error mapping.

What it promises when ClickHouse is slow, down or refuses:
- it never blocks the pipeline: batches wait in its own bounded queue (`sending_queue`);
  when that is full the receiver tells clients to retry (counted as enqueue-failed);
- ClickHouse down at start does not stop the daemon: it connects (and creates the schema)
  on the first send that can reach the server, and keeps retrying until then;
- each insert is bounded by `timeout`; a timeout, a connection error, overload
  (`TOO_MANY_PARTS`, `MEMORY_LIMIT_EXCEEDED`, HTTP 503) or any error that is not about the
  data is retried with backoff (`retry_on_failure`), so a batch whose insert timed out after
  the server stored it is sent again, with the same `insert_deduplication_token` (a hash of the
  batch's content and the row range), and the server stores it once: the tables keep the
  tokens of their last 1000 inserts (`non_replicated_deduplication_window`, set on each start
  with `ALTER TABLE ... MODIFY SETTING`; pipeline/clickhouse/schema.py). The same holds for a
  batch sent again after a restart (persistent queue, write-ahead log). With `async_insert`
  this needs a server that deduplicates asynchronous inserts into non-replicated tables (as
  ClickHouse 26 does); set `async_insert: false` where yours does not;
- values a column cannot hold are clamped and the span marked (schema.py "Limits");
- an error that says some rows are bad (cannot parse, out of range, too large, a table
  constraint ...; errors.py) costs only those rows: the batch is bisected, every good row
  is stored, the refused rows are counted in
  `otelcol_exporter_send_failed_spans{error_type="invalid_data"}`, logged once per batch
  and kept in `dead_letter` (default `./data/dead_letter/<exporter id>/`; rows.py); an
  error about the statement itself (unknown column, syntax) refuses the batch under the
  ClickHouse error name, dead-lettered too. The queue moves on either way.
"""
from __future__ import annotations

from exporters.clickhouse.config import ClickHouseConfig
from exporters.clickhouse.exporter import ClickHouseExporter
from pipeline.component import Factory, Kind, Signal

factory = Factory("clickhouse", Kind.EXPORTER, ClickHouseConfig, ClickHouseExporter,
                  signals=frozenset({Signal.TRACES, Signal.LOGS, Signal.EVENTS}),
                  description="insert spans into ClickHouse over HTTP (otelcol clickhouseexporter schema), "
                              "and trigger events / decisions into an audit table")

__all__ = ["ClickHouseConfig", "ClickHouseExporter", "factory"]
