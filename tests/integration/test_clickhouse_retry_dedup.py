"""A retried ClickHouse insert stores each span once: after a timeout, and after a crash and restart.

The fault: the server stores an insert but its answer comes after the exporter's `timeout`, so
the exporter retries a batch the server already holds (seen under load in
test_poison_data.py as "span good-105 stored 2 times"). A real server cannot be made to do
that on demand, so the chDB-backed endpoint holds the answer back
(`ClickHouseHTTP.delay_answers`, fault injection: the insert itself runs as usual).

- control: on a table that keeps no deduplication tokens (created earlier, `create_schema:
  false` leaves it so) the fault stores the batch twice, which shows the delay really makes the
  exporter retry an insert the server stored;
- the exporter's own schema (new tables, or that same existing table, given the window by
  `ALTER TABLE ... MODIFY SETTING` at start), with and without `async_insert`: every span once;
- a crash while the stored insert's answer is still held back leaves the batch in the persistent
  queue; the restarted daemon sends it again, and every span is still stored once.
"""
from __future__ import annotations

import time

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from exporters.clickhouse.config import ClickHouseConfig
from pipeline.clickhouse.tables import traces_spec
from testkit.harness import BASE_CONFIG, Daemon, batch_processor, component, pipeline_overlay, wait_until

SPANS = 20
HELD = 6.0  # seconds the first insert's answer is held back: past the exporter's 4 s timeout
RETRY = "{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 0}"
DATA_INSERT = "INSERT INTO `otel`.`otel_traces` ("  # the exporter's inserts: not a query, nor a backfill


STORAGE = """
extensions:
  file_storage: {directory: "{dir}/queue"}
service:
  extensions: [health_check, debug_api, file_storage]
"""


def _daemon(endpoint: str, workdir=None, overlays: tuple[str, ...] = (), **options: object) -> Daemon:
    exporter = component("clickhouse", endpoint=endpoint, retry_on_failure=RETRY,
                         dead_letter="{dir}/dead_letter", **{"async_insert": "false", "timeout": "4s", **options})
    return Daemon(BASE_CONFIG, workdir=workdir, overlay=[pipeline_overlay(exporter, batch_processor()), *overlays])


def _send(daemon: Daemon) -> list[str]:
    """One OTLP request of SPANS spans that ended a minute ago; their span ids."""
    now = time.time_ns() - 60 * 10**9
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "retry-agent"
    scope = rs.scope_spans.add()
    ids = []
    for seed in range(1, SPANS + 1):
        ids.append(f"{seed:016x}")
        scope.spans.add(trace_id=seed.to_bytes(16, "big"), span_id=seed.to_bytes(8, "big"), name=f"op-{seed}",
                        start_time_unix_nano=now + seed, end_time_unix_nano=now + seed + 1000)
    answer = requests.post(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data=request.SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return ids


def _copies(server) -> dict[str, int]:
    client = server.client()
    try:
        rows = client.query("SELECT SpanId, count() FROM otel.otel_traces GROUP BY SpanId").result_rows
    finally:
        client.close()
    return {span_id: count for span_id, count in rows}


def _create_tables_without_window(server) -> None:
    """The spans tables as an earlier version made them: no deduplication window."""
    client = server.client()
    try:
        for statement in traces_spec(ClickHouseConfig(endpoint=server.url)).statements:
            if "MODIFY SETTING" not in statement:
                client.command(statement)
    finally:
        client.close()


def _retried_once(server, daemon: Daemon, ids: list[str]) -> None:
    """Wait until the timed-out attempt was retried and the batch counted as sent."""
    wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="clickhouse") >= len(ids),
               timeout=30, message="the batch sent")
    assert daemon.metric("agentdbg_exporter_retried_requests_total", exporter="clickhouse") >= 1
    assert server.stats()["inserts"] >= 2  # the first attempt and its retry both reached the server


def test_control_the_fault_stores_a_batch_twice_where_the_table_keeps_no_tokens(clickhouse_http):
    _create_tables_without_window(clickhouse_http)
    clickhouse_http.delay_answers(HELD, match=DATA_INSERT)
    with _daemon(clickhouse_http.url, create_schema="false") as daemon:
        ids = _send(daemon)
        _retried_once(clickhouse_http, daemon, ids)
    copies = _copies(clickhouse_http)
    assert set(copies) == set(ids) and min(copies.values()) >= 2, copies


@pytest.mark.parametrize("existing, async_insert", [(False, False), (False, True), (True, False)],
                         ids=["new tables", "async_insert", "table of an earlier version"])
def test_an_insert_stored_before_its_timeout_is_stored_once(clickhouse_http, existing, async_insert):
    if existing:
        _create_tables_without_window(clickhouse_http)
    clickhouse_http.delay_answers(HELD, match=DATA_INSERT)
    with _daemon(clickhouse_http.url, async_insert=str(async_insert).lower()) as daemon:
        ids = _send(daemon)
        _retried_once(clickhouse_http, daemon, ids)
        assert daemon.metric("otelcol_exporter_send_failed_spans_total") == 0
    assert _copies(clickhouse_http) == {span_id: 1 for span_id in ids}


def test_a_batch_stored_before_a_crash_is_stored_once_after_the_restart(clickhouse_http, tmp_path):
    workdir = tmp_path / "daemon"
    clickhouse_http.delay_answers(15.0, match=DATA_INSERT)  # stored, answered only after the crash
    daemon = _daemon(clickhouse_http.url, workdir=workdir, overlays=(STORAGE,), timeout="60s",
                     sending_queue="{storage: file_storage}")
    with daemon:
        ids = _send(daemon)
        wait_until(lambda: sum(_copies(clickhouse_http).values()) == len(ids), timeout=30, message="the batch stored")
        daemon.kill()  # the exporter still waits for the answer: the batch's queue file stays
    assert list((workdir / "queue").rglob("*.batch")), "the stored batch is still queued on disk"
    with daemon:  # same directory: the queue is sent first
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="clickhouse") >= len(ids),
                   timeout=30, message="the replayed batch sent")
        assert clickhouse_http.stats()["inserts"] >= 2
    assert _copies(clickhouse_http) == {span_id: 1 for span_id in ids}
