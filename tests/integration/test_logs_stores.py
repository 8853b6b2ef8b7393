"""OTLP logs into the `otel_logs` table: the `chdb` store and the `clickhouse` exporter (against the
chDB-backed ClickHouse HTTP endpoint), record by record from the OpenTelemetry Python SDK; a log's
trace id joins its spans; poison records are stored clamped beside the good ones."""
from __future__ import annotations

import time
import urllib.request

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from testkit.harness import BASE_CONFIG, ROOT, Daemon, free_port, query_json, wait_until
from testkit.otlp_logs import SentLog, keys, send_sdk_logs
from testkit.trigger_helpers import heartbeat_record, logs, new_span_id, span

INFLIGHT = "agentdbg_trigger_inflight_records_total"

CHDB = """
processors:
  batch: {timeout: 50ms}
exporters:
  chdb:
    path: "{dir}/chdb"
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [chdb]}
    logs: {receivers: [otlp], processors: [batch], exporters: [chdb]}
"""

ROWS = ("SELECT Body, SeverityText, SeverityNumber, toUnixTimestamp64Nano(Timestamp) AS ns, TraceId, SpanId, "
        "ServiceName, LogAttributes, ResourceAttributes, ScopeName, ScopeVersion FROM otel.otel_logs")


def stored_at_least(daemon: Daemon, records: int, spans: int = 0) -> bool:
    """Whether the chdb exporter counts that many log records and spans as sent (otelcol's names)."""
    return (daemon.metric("otelcol_exporter_sent_log_records_total", exporter="chdb") >= records
            and daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >= spans)


def stored(rows: list[dict]) -> list[SentLog]:
    return [SentLog(r["Body"], r["SeverityText"], int(r["SeverityNumber"]), int(r["ns"]), r["LogAttributes"],
                    r["TraceId"], r["SpanId"], r["ServiceName"], r["ResourceAttributes"]) for r in rows]


def test_sdk_logs_are_stored_in_chdb_record_by_record_and_join_their_spans(tmp_path):
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=CHDB) as daemon:
        sent = send_sdk_logs("grpc", f"127.0.0.1:{daemon.ports['grpc']}", count=8)
        spans = sum(1 for s in sent if s.trace_id)
        wait_until(lambda: stored_at_least(daemon, len(sent), spans), timeout=30,
                   message="every record and span stored")
    path = str(tmp_path / "chdb")
    rows = query_json(ROWS, "--path", path)
    assert keys(stored(rows)) == keys(sent)
    assert all(r["ResourceAttributes"]["service.name"] == "logs-svc"
               and r["ResourceAttributes"]["deployment.environment"] == "test"
               and r["ResourceAttributes"]["telemetry.sdk.language"] == "python"
               and r["ScopeName"] == "testkit.logs" and r["ScopeVersion"] == "1.0" for r in rows)
    joined = query_json("SELECT l.Body AS body, s.SpanName AS span, s.SpanId AS span_id FROM otel.otel_logs AS l "
                        "INNER JOIN otel.otel_traces AS s ON l.TraceId = s.TraceId AND l.SpanId = s.SpanId",
                        "--path", path)
    expected = sorted((s.body, f"step {s.body.split()[1]}", s.span_id) for s in sent if s.trace_id)
    assert sorted((j["body"], j["span"], j["span_id"]) for j in joined) == expected
    untraced = query_json("SELECT count() AS n FROM otel.otel_logs WHERE TraceId = ''", "--path", path)
    assert untraced[0]["n"] == len(sent) - spans


def poison_request() -> ExportLogsServiceRequest:
    now = time.time_ns() // 1000 * 1000  # whole microseconds: the last digits below are the test's
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.add(key="service.name").value.string_value = "poison"
    scope = rl.scope_logs.add()
    good = scope.log_records.add(time_unix_nano=now, severity_number=9)
    good.body.string_value = "good"
    late = scope.log_records.add(time_unix_nano=2**64 - 1, severity_number=300)
    late.body.string_value = "late"
    unset = scope.log_records.add(time_unix_nano=0, observed_time_unix_nano=now + 123)
    unset.body.bytes_value = b"\xff\xfe not text"
    huge = scope.log_records.add(time_unix_nano=now + 1, flags=0x1FF)
    huge.body.string_value = "huge"
    huge.attributes.add(key="blob").value.string_value = "x" * (4 * 1024 * 1024)
    return request


def post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def test_poison_records_are_stored_clamped_beside_the_good_ones(tmp_path):
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=CHDB) as daemon:
        request = poison_request()
        observed = request.resource_logs[0].scope_logs[0].log_records[2].observed_time_unix_nano
        assert post(f"http://127.0.0.1:{daemon.ports['http']}/v1/logs", request.SerializeToString()) == 200
        wait_until(lambda: stored_at_least(daemon, 4), timeout=30, message="every record stored")
        failed = daemon.metric("otelcol_exporter_send_failed_log_records_total", exporter="chdb")
    rows = query_json("SELECT Body AS body, toString(Timestamp) AS ts, toUnixTimestamp64Nano(Timestamp) AS ns, "
                      "SeverityNumber AS sev, TraceFlags AS flags, "
                      "length(LogAttributes['blob']) AS blob, LogAttributes['agentdbg.clamped'] AS clamped "
                      "FROM otel.otel_logs ORDER BY Timestamp", "--path", str(tmp_path / "chdb"))
    by_body = {r["body"]: r for r in rows}
    assert failed == 0 and len(rows) == 4
    assert by_body["good"]["clamped"] == "" and by_body["good"]["sev"] == 9
    assert by_body["late"]["ts"] == "2262-04-11 23:47:16.854775807"
    assert by_body["late"]["clamped"] == "Timestamp,SeverityNumber" and by_body["late"]["sev"] == 0
    unset = next(r for body, r in by_body.items() if body not in ("good", "late", "huge"))
    assert unset["body"] == "//4gbm90IHRleHQ=" and int(unset["ns"]) == observed and unset["clamped"] == ""
    assert by_body["huge"]["blob"] == 4 * 1024 * 1024 and by_body["huge"]["flags"] == 0xFF


def test_sdk_logs_reach_the_clickhouse_exporter_record_by_record(tmp_path, clickhouse_http):
    overlay = f"""
processors:
  batch: {{timeout: 50ms}}
exporters:
  clickhouse:
    endpoint: {clickhouse_http.url}
    timeout: 10s
    dead_letter: "{{dir}}/dead_letter"
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [clickhouse]}}
    logs: {{receivers: [otlp], processors: [batch], exporters: [clickhouse]}}
"""
    with Daemon(BASE_CONFIG, workdir=tmp_path / "daemon", overlay=overlay) as daemon:
        sent = send_sdk_logs("http", f"127.0.0.1:{daemon.ports['http']}", count=6, service="ch-logs")
        wait_until(lambda: clickhouse_http.scalar("SELECT count() FROM otel.otel_logs") >= len(sent),
                   timeout=30, message="every record stored")
        wait_until(lambda: clickhouse_http.scalar("SELECT count() FROM otel.otel_traces") >= 3,
                   timeout=30, message="the spans stored")
    result = clickhouse_http.client().query(ROWS)
    rows = [dict(zip(result.column_names, row)) for row in result.result_rows]
    for row in rows:
        row["ns"] = int(row["ns"])
    assert keys(stored(rows)) == keys(sent)
    joined = clickhouse_http.scalar("SELECT count() FROM otel.otel_logs AS l INNER JOIN otel.otel_traces AS s "
                                    "ON l.TraceId = s.TraceId AND l.SpanId = s.SpanId")
    assert joined == sum(1 for s in sent if s.trace_id)
    ddl = clickhouse_http.client().command("SHOW CREATE TABLE otel.otel_logs")
    assert "ORDER BY (ServiceName, TimestampTime, Timestamp)" in ddl and "TTL TimestampTime" in ddl


def heartbeats(now: float) -> bytes:
    """An OTLP/HTTP logs request: a heartbeat and the stop of one open tool span, as
    partial-span-processor sends them."""
    tool = span("execute_tool search", span_id=new_span_id(), start=now,
                attrs={"gen_ai.operation.name": "execute_tool"})
    tool.end_time_unix_nano = 0
    records = [heartbeat_record(tool, event, "default-logs", now) for event in ("heartbeat", "stop")]
    return logs(*records, at=now).message.SerializeToString()


def test_config_default_yaml_stores_logs_beside_the_spans(tmp_path):
    """config/default.yaml as shipped (ports and data directory from its env vars) takes logs;
    partial-span heartbeats reach the triggers connector and are not stored."""
    daemon = Daemon((ROOT / "config" / "default.yaml").read_text(), workdir=tmp_path / "daemon")
    daemon.env = {
        "AGENTDBG_DATA_DIR": str(tmp_path / "data"),
        **{f"AGENTDBG_{name.upper()}": f"127.0.0.1:{daemon.ports[port]}" for name, port in (
            ("otlp_grpc_endpoint", "grpc"), ("otlp_http_endpoint", "http"), ("health_endpoint", "health"),
            ("debug_endpoint", "debug"), ("metrics_address", "metrics"))},
        "AGENTDBG_EXPLORER_ENDPOINT": f"127.0.0.1:{free_port()}",
    }
    with daemon:
        assert post(f"http://127.0.0.1:{daemon.ports['http']}/v1/logs", heartbeats(time.time())) == 200
        sent = send_sdk_logs("http", f"127.0.0.1:{daemon.ports['http']}", count=4, service="default-logs")
        wait_until(lambda: stored_at_least(daemon, len(sent), 2), timeout=30,
                   message="the records and their spans stored")
        wait_until(lambda: daemon.metric(INFLIGHT, event="stop") >= 1, timeout=30, message="the stop read")
        assert daemon.metric(INFLIGHT, event="heartbeat") == 1
        assert daemon.metric("otelcol_processor_incoming_items_total", processor="drop_heartbeats") - daemon.metric(
            "otelcol_processor_outgoing_items_total", processor="drop_heartbeats") == 2
    path = str(tmp_path / "data" / "chdb")
    assert keys(stored(query_json(ROWS, "--path", path))) == keys(sent)  # the SDK's records, no heartbeat
    joined = query_json("SELECT count() AS n FROM otel.otel_logs AS l INNER JOIN otel.otel_traces AS s "
                        "ON l.TraceId = s.TraceId AND l.SpanId = s.SpanId", "--path", path)
    assert joined[0]["n"] == sum(1 for s in sent if s.trace_id)
