"""OTLP logs from the OpenTelemetry Python SDK through the `kafka` exporter to a real Apache Kafka
broker (testkit/kafka_broker.py): otelcol's `otlp_logs` default topic, otlp_proto and otlp_json,
each message one ExportLogsServiceRequest; compared record by record with what the SDK sent."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from testkit.harness import BASE_CONFIG, Daemon
from testkit.otlp_logs import keys, read_logs, send_sdk_logs


@pytest.mark.parametrize("encoding", ["otlp_proto", "otlp_json"])
def test_sdk_logs_reach_the_logs_topic_record_by_record(kafka_broker, encoding):
    spans_topic = f"spans_{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic("otlp_logs", partitions=1)
    overlay = f"""
processors:
  batch: {{timeout: 50ms}}
exporters:
  kafka:
    brokers: [{kafka_broker.bootstrap}]
    topic: {spans_topic}
    timeout: 5s
    logs: {{encoding: {encoding}}}
service:
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [kafka]}}
"""
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        sent = send_sdk_logs("grpc", f"127.0.0.1:{daemon.ports['grpc']}", count=6, service="kafka-logs")
        got = asyncio.run(read_logs(kafka_broker.bootstrap, "otlp_logs", len(sent), encoding == "otlp_json"))
    assert keys(got) == keys(sent)
    assert spans_topic not in kafka_broker.topics()  # logs never go to the spans topic
