"""Issue 6's audit table: an `events` pipeline into `clickhouse` and `chdb` (`agentdbg_decisions`).

A daemon reads trigger events and safety decisions from a Kafka topic (the `kafka` receiver,
`encoding: json`, as the safety consumer does) and its events pipeline writes them, side by
side, to ClickHouse (the chDB-backed HTTP test endpoint, default table name) and to the
embedded engine (`chdb`, `events_table_name: decisions_audit`). One decision is on the topic
twice, as a redelivery puts it. Read back:
- ClickHouse (clickhouse-connect, `FINAL`) and chdb (`agentdbg query`, `FINAL`): one row per
  document id, every column right (Timestamp from decided_at / emitted_at to the
  millisecond written, Kind = action or trigger kind, Status, Target) and the stored JSON
  equal to the document that was produced;
- the table the exporter created is a ReplacingMergeTree(Timestamp) ordered by (Kind, Id)
  and partitioned by day; the events instances created no spans table;
- each exporter counted every document it wrote (the redelivered one twice) and none failed.
"""
from __future__ import annotations

from pathlib import Path

import orjson

from pipeline.pdata.events import document_key
from testkit.audit_documents import AUDIT_SQL, assert_audit_rows, sample_documents
from testkit.harness import BASE_CONFIG, Daemon, query_json, wait_until
from testkit.kafka_broker import produce

TOPIC = "agent.safety.decisions"
OVERLAY = """
receivers:
  kafka:
    brokers: [%(broker)s]
    topics: [%(topic)s]
    group_id: audit
    initial_offset: earliest
    encoding: json
exporters:
  clickhouse:
    endpoint: %(clickhouse)s
    async_insert: false
    retry_on_failure: {initial_interval: 100ms, max_interval: 500ms}
  chdb:
    path: {dir}/chdb
    events_table_name: decisions_audit
service:
  pipelines:
    events:
      receivers: [kafka]
      exporters: [clickhouse, chdb]
"""


def test_events_pipeline_writes_the_audit_table_in_clickhouse_and_chdb(kafka_broker, clickhouse_http):
    documents = sample_documents()
    on_topic = [*documents, documents[2]]  # the breaker decision redelivered
    kafka_broker.create_topic(TOPIC, partitions=1)
    produce(kafka_broker, TOPIC, [(document_key(doc).encode(), orjson.dumps(doc)) for doc in on_topic])
    overlay = OVERLAY % {"broker": kafka_broker.bootstrap, "topic": TOPIC, "clickhouse": clickhouse_http.url}
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        for exporter in ("clickhouse", "chdb"):
            wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter=exporter) == len(on_topic),
                       timeout=60, message=f"{exporter} writing every document")
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0
        chdb_path = Path(daemon.dir) / "chdb"

    client = clickhouse_http.client()
    try:
        assert_audit_rows(client.query(AUDIT_SQL.format(table="otel.agentdbg_decisions", final="FINAL"))
                          .named_results(), documents)
        engine, sorting_key, partition_key = client.query(
            "SELECT engine_full, sorting_key, partition_key FROM system.tables "
            "WHERE database = 'otel' AND name = 'agentdbg_decisions'").result_rows[0]
        tables = {row[0] for row in client.query("SHOW TABLES FROM otel").result_rows}
    finally:
        client.close()
    assert engine.startswith("ReplacingMergeTree(Timestamp)")
    assert sorting_key == "Kind, Id" and partition_key == "toDate(Timestamp)"
    assert tables == {"agentdbg_decisions"}

    rows = query_json(AUDIT_SQL.format(table="otel.decisions_audit", final="FINAL"), "--path", str(chdb_path))
    assert_audit_rows(rows, documents)
