"""Logs in the batch processor's write-ahead log and the persistent sending queue (`file_storage`):
log records the receiver acknowledged before a SIGKILL are delivered after the restart."""
from __future__ import annotations

import signal

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon, wait_until
from testkit.otlp_logs import keys, logs_of_request, send_sdk_logs

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
