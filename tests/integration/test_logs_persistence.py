"""Logs in the batch processor's write-ahead log and the persistent sending queue (`file_storage`):
log records the receiver acknowledged before a SIGKILL are delivered after the restart."""
from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.otlp_logs import keys, logs_of_request, read_logs, send_sdk_logs
from tests.integration.test_logs_otlp_backend import Otelcol, otelcol_binary  # noqa: F401 (a fixture)

# The batch processor holds the records (a timeout of an hour) in its log under file_storage.
OVERLAY = """
extensions:
  file_storage: {directory: "%(queue)s"}
processors:
  batch: {timeout: %(timeout)s, send_batch_size: 100000}
exporters:
  file:
    path: "%(out)s"
    flush_interval: 50ms
    sending_queue: {storage: file_storage}
service:
  extensions: [health_check, debug_api, file_storage]
  pipelines:
    logs: {receivers: [otlp], processors: [batch], exporters: [file]}
"""


def file_records(path) -> list:
    if not path.exists():
        return []
    return [log for line in path.read_bytes().splitlines() if line
            for log in logs_of_request(otlp_json.decode(line, ExportLogsServiceRequest))]


def test_logs_acknowledged_before_a_sigkill_are_delivered_after_the_restart(tmp_path):
    values = {"queue": tmp_path / "queue", "out": tmp_path / "logs.jsonl"}
    holding = Daemon(BASE_CONFIG, workdir=tmp_path / "first", overlay=OVERLAY % {**values, "timeout": "1h"})
    with holding:
        sent = send_sdk_logs("grpc", f"127.0.0.1:{holding.ports['grpc']}", count=6)
        assert holding.metric("otelcol_receiver_accepted_log_records_total") == len(sent)
        holding.signal(signal.SIGKILL)
        holding.proc.wait(10)
    assert file_records(values["out"]) == []  # nothing left the batch processor before the kill
    with Daemon(BASE_CONFIG, workdir=tmp_path / "second", overlay=OVERLAY % {**values, "timeout": "50ms"}):
        wait_until(lambda: len(file_records(values["out"])) >= len(sent), timeout=30,
                   message="the acknowledged records replayed into the file")
    assert keys(file_records(values["out"])) == keys(sent)


# One exporter id in a traces and a logs pipeline, its queue on disk: two instances, one storage.
FORWARDER = """
extensions:
  file_storage: {directory: "%(queue)s"}
exporters:
  otlphttp:
    endpoint: %(sink)s
    timeout: 500ms
    sending_queue: {storage: file_storage}
    retry_on_failure: {initial_interval: 100ms, max_interval: 500ms, max_elapsed_time: 0}
service:
  extensions: [health_check, debug_api, file_storage]
  pipelines:
    traces: {receivers: [otlp], exporters: [otlphttp]}
    logs: {receivers: [otlp], exporters: [otlphttp]}
"""


async def read_span_ids(bootstrap: str, topic: str, want: set[str], timeout: float = 60) -> list[str]:
    """The span ids of the OTLP traces messages on a Kafka topic, from the start until `want` arrived."""
    from aiokafka import AIOKafkaConsumer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while not want <= set(found) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [span.span_id.hex() for record in records
                          for rs in ExportTraceServiceRequest.FromString(record.value).resource_spans
                          for scope in rs.scope_spans for span in scope.spans]
    finally:
        await consumer.stop()
    return found


@pytest.mark.usefixtures("otelcol_binary")
def test_an_exporter_in_a_traces_and_a_logs_pipeline_replays_each_queue_to_its_own_signal(tmp_path, kafka_broker):
    """Each (exporter, signal) instance keeps its queue files apart: after a SIGKILL the spans go to
    /v1/traces and the records to /v1/logs (before, both instances replayed the one directory, each
    sending the other's batches to its own endpoint too, where they were refused and counted as
    failed; a file the wrong instance deleted after that was gone for the right one). The
    destination is the real OpenTelemetry Collector (benchmarks/otelcol; test_logs_otlp_backend.py's
    Otelcol), frozen with SIGSTOP while the forwarder queues, writing each signal to its own Kafka topic."""
    topic = f"replay_{uuid.uuid4().hex[:8]}"
    for name in (f"{topic}_spans", topic):
        kafka_broker.create_topic(name, partitions=1)
    with Otelcol(kafka_broker.bootstrap, topic) as backend:
        assert backend.proc is not None
        overlay = FORWARDER % {"queue": tmp_path / "queue", "sink": f"http://127.0.0.1:{backend.http}"}
        try:
            backend.proc.send_signal(signal.SIGSTOP)  # the destination hangs: everything stays queued
            forwarder = Daemon(BASE_CONFIG, workdir=tmp_path / "fwd", overlay=overlay).start()
            sent = send_sdk_logs("http", f"127.0.0.1:{forwarder.ports['http']}", count=6)
            spans = {s.span_id for s in sent if s.span_id}
            assert forwarder.metric("otelcol_receiver_accepted_log_records_total") == len(sent)
            forwarder.signal(signal.SIGKILL)
            forwarder.proc.wait(10)
            backend.proc.send_signal(signal.SIGCONT)
            with Daemon(BASE_CONFIG, workdir=tmp_path / "fwd2", overlay=overlay) as restarted:
                wait_until(lambda: not list((tmp_path / "queue").rglob("*.batch")), timeout=60,
                           message="queue files removed")
                failed = (restarted.metric("otelcol_exporter_send_failed_spans_total")
                          + restarted.metric("otelcol_exporter_send_failed_log_records_total"))
        finally:
            backend.proc.send_signal(signal.SIGCONT)
        records = asyncio.run(read_logs(kafka_broker.bootstrap, topic, len(sent), json=False))
        span_ids = asyncio.run(read_span_ids(kafka_broker.bootstrap, f"{topic}_spans", spans))
    assert failed == 0  # nothing was sent to the other signal's endpoint, where it would be refused
    # At least once: the requests the frozen backend had buffered before the kill arrive too. But
    # every record is one that was sent as a record, every span one sent as a span.
    assert sorted(set(keys(records))) == keys(sent)
    assert set(span_ids) == spans
