"""The `clickhouse` exporter end to end: OpenTelemetry SDK → daemon → ClickHouse HTTP (chDB-backed fixture).

- every span the SDK sent is one `otel_traces` row with every field of
  docs/clickhouse-schema.md#the-spans-table-otel_traces right (hex ids, `Server`/`Error`
  strings, nanosecond Timestamp and Duration, attribute maps, events, links, ServiceName,
  ResourceAttributes), read back with clickhouse-connect; the
  schema was created by the exporter, and the trace-id lookup table holds every trace;
- outage: the endpoint is stopped while load runs and started again; every span the
  receiver accepted arrives (duplicates counted and reported, none missing); ClickHouse
  down when the daemon starts delays the spans, never loses them;
- a server error about the insert statement itself (an unknown column) refuses that batch only
  (counted under its ClickHouse name); overload (TOO_MANY_PARTS) is retried until it succeeds
  (errors about some rows are isolated row by row: tests/integration/test_poison_data.py);
- a `tcp://` endpoint is refused at validation with a clear message.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from testkit.harness import BASE_CONFIG, Daemon, batch_processor, component, pipeline_overlay, wait_until
from testkit.otel_traces_check import ROWS_SQL, assert_rows_match, send_agent_traces
from testkit.otlp_spans import sdk_provider

RETRY = "{initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0}"


def _daemon(endpoint: str, compress: str = "lz4", async_insert: bool = False, workdir: Path | None = None) -> Daemon:
    """otlp → batch → clickhouse at `endpoint` (not started)."""
    exporter = component("clickhouse", endpoint=endpoint, compress=compress, async_insert=str(async_insert).lower(),
                         timeout="10s", retry_on_failure=RETRY, dead_letter="{dir}/dead_letter")
    overlay = pipeline_overlay(exporter, batch_processor(send_batch_size=500))
    return Daemon(BASE_CONFIG, workdir=workdir, overlay=overlay)


def _client(server):
    return server.client()


def _count(server, sql: str) -> int:
    return server.scalar(sql)


@pytest.mark.parametrize("compress, async_insert", [("lz4", False), ("zstd", True), ("none", False)])
def test_every_span_and_field_arrives(clickhouse_http, compress, async_insert):
    with _daemon(clickhouse_http.url, compress, async_insert) as daemon:
        spans = send_agent_traces(f"http://127.0.0.1:{daemon.ports['grpc']}")
        wait_until(lambda: _count(clickhouse_http, "SELECT count() FROM otel.otel_traces") >= len(spans),
                   timeout=30, message="spans in ClickHouse")
        client = _client(clickhouse_http)
        rows = list(client.query(ROWS_SQL.format(table="otel.otel_traces")).named_results())
        assert_rows_match(rows, spans)
        lookup = client.query("SELECT TraceId, min(Start), max(End) FROM otel.otel_traces_trace_id_ts "
                              "GROUP BY TraceId").result_rows
        traces = {f"{s.context.trace_id:032x}" for s in spans}
        assert {row[0] for row in lookup} == traces
        for trace_id, start, end in lookup:
            starts = [s.start_time for s in spans if f"{s.context.trace_id:032x}" == trace_id]
            assert int(start.timestamp()) == min(starts) // 10**9 and start <= end
        tables = {row[0] for row in client.query("SHOW TABLES FROM otel").result_rows}
        assert tables >= {"otel_traces", "otel_traces_trace_id_ts", "otel_traces_trace_id_ts_mv"}
        client.close()
        assert daemon.metric("otelcol_exporter_sent_spans_total", exporter="clickhouse") == len(spans)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0


class Load:
    """Agents sending spans at a steady pace from a thread; the SDK keeps its own record."""

    def __init__(self, endpoint: str) -> None:
        self.provider, self.memory = sdk_provider(Resource.create({"service.name": "load-agent"}), BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint, insecure=True), schedule_delay_millis=20, max_export_batch_size=100))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        tracer = self.provider.get_tracer("load")
        i = 0
        while not self.stop.is_set():
            for _ in range(20):
                with tracer.start_as_current_span(f"step-{i % 7}") as span:
                    span.set_attribute("i", i)
                i += 1
            time.sleep(0.02)

    def __enter__(self) -> "Load":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.provider.shutdown()


def test_outage_and_recovery_loses_nothing(clickhouse_http):
    with _daemon(clickhouse_http.url) as daemon:
        with Load(f"http://127.0.0.1:{daemon.ports['grpc']}") as load:
            wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") > 200, timeout=30,
                       message="spans flowing")
            clickhouse_http.stop()
            accepted_at_stop = daemon.metric("otelcol_receiver_accepted_spans_total")
            wait_until(lambda: daemon.metric("otelcol_receiver_accepted_spans_total") > accepted_at_stop + 500,
                       timeout=30, message="spans accepted during the outage")
            recovered_at = daemon.metric("otelcol_exporter_sent_spans_total")
            clickhouse_http.start()
            wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") > recovered_at, timeout=30,
                       message="spans delivered again after the recovery")
        accepted = daemon.metric("otelcol_receiver_accepted_spans_total")
        sent_ids = {f"{s.context.span_id:016x}" for s in load.memory.get_finished_spans()}
        wait_until(lambda: _count(clickhouse_http, "SELECT uniqExact(SpanId) FROM otel.otel_traces") >= accepted,
                   timeout=60, interval=0.5, message="every accepted span in ClickHouse")
        client = _client(clickhouse_http)
        total, unique = client.query("SELECT count(), uniqExact(SpanId) FROM otel.otel_traces").result_rows[0]
        stored = {row[0] for row in client.query("SELECT DISTINCT SpanId FROM otel.otel_traces").result_rows}
        client.close()
        refused = daemon.metric("otelcol_receiver_refused_spans_total")
        print(f"accepted={accepted:.0f} refused={refused:.0f} rows={total} unique={unique} "
              f"duplicates={total - unique}")
        assert daemon.metric("agentdbg_exporter_retried_requests_total") > 0  # the outage was seen
        assert unique == accepted
        assert stored <= sent_ids
        if refused == 0:
            assert stored == sent_ids
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0


def test_clickhouse_down_at_start(clickhouse_http):
    clickhouse_http.stop()
    with _daemon(clickhouse_http.url) as daemon:  # starts anyway
        spans = send_agent_traces(f"http://127.0.0.1:{daemon.ports['grpc']}")
        wait_until(lambda: daemon.metric("agentdbg_exporter_retried_requests_total") > 0, timeout=30,
                   message="the exporter retrying while ClickHouse is down")
        clickhouse_http.start()
        wait_until(lambda: _count(clickhouse_http, "SELECT count() FROM otel.otel_traces") == len(spans),
                   timeout=30, message="spans after ClickHouse came up")
        assert "ClickHouse not reachable at start" in daemon.log()
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0


def test_bad_data_is_permanent_and_overload_retries(clickhouse_http):
    with _daemon(clickhouse_http.url) as daemon:
        endpoint = f"http://127.0.0.1:{daemon.ports['grpc']}"
        first = send_agent_traces(endpoint)
        wait_until(lambda: _count(clickhouse_http, "SELECT count() FROM otel.otel_traces") == len(first),
                   timeout=30, message="first batch")
        clickhouse_http.inject(16, "NO_SUCH_COLUMN_IN_TABLE", count=1, match="INSERT INTO")
        dropped = send_agent_traces(endpoint)
        wait_until(lambda: daemon.metric("otelcol_exporter_send_failed_spans_total",
                                         error_type="NO_SUCH_COLUMN_IN_TABLE") > 0,
                   timeout=30, message="permanent failure counted")
        clickhouse_http.inject(252, "TOO_MANY_PARTS", count=3, match="INSERT INTO")
        retried = send_agent_traces(endpoint)
        expected = len(first) + len(dropped) + len(retried)
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") + daemon.metric(
            "otelcol_exporter_send_failed_spans_total") >= expected, timeout=30, message="all batches settled")
        failed = daemon.metric("otelcol_exporter_send_failed_spans_total", error_type="NO_SUCH_COLUMN_IN_TABLE")
        stored = _count(clickhouse_http, "SELECT count() FROM otel.otel_traces")
        assert 0 < failed <= len(dropped)
        assert stored == expected - failed
        assert daemon.metric("agentdbg_exporter_retried_requests_total") >= 3
        assert "NO_SUCH_COLUMN_IN_TABLE" in daemon.log()


def test_tcp_endpoint_is_refused_with_a_clear_error(tmp_path):
    result = _daemon("tcp://127.0.0.1:9000", workdir=tmp_path).validate()
    assert result.returncode == 1
    assert "exporters::clickhouse::endpoint" in result.stderr and "http://host:8123" in result.stderr
