"""OTLP logs from the OpenTelemetry Python SDK through the `kafka` exporter to a real Apache Kafka
broker (testkit/kafka_broker.py): otelcol's `otlp_logs` default topic, otlp_proto and otlp_json,
each message one ExportLogsServiceRequest; compared record by record with what the SDK sent."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline import otlp_json
from testkit.harness import BASE_CONFIG, Daemon
from testkit.otlp_logs import SentLog, keys, logs_of_request, send_sdk_logs


async def read_logs(bootstrap: str, topic: str, want: int, json: bool, timeout: float = 60) -> list[SentLog]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    logs: list[SentLog] = []
    deadline = time.monotonic() + timeout
    try:
        while len(logs) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    request = (otlp_json.decode(record.value, ExportLogsServiceRequest) if json
                               else ExportLogsServiceRequest.FromString(record.value))
                    logs.extend(logs_of_request(request))
    finally:
        await consumer.stop()
    return logs


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
