"""OTLP logs out through the `otlp` (gRPC LogsService) and `otlphttp` (`/v1/logs`) exporters into a
real OTLP backend that takes logs, compared record by record with what the OpenTelemetry Python
SDK sent.

The backend is the OpenTelemetry Collector built from the Go module proxy by benchmarks/otelcol
(`make test` builds it into .cache/otelcol): its own otlp receiver takes the logs and its kafka
exporter writes them, as otelcol encodes them, to a real Apache Kafka topic
(testkit/kafka_broker.py) that the test reads. Jaeger takes no logs and Loki is not available
here; the collector is the one real OTLP logs server on this machine.
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from testkit.harness import BASE_CONFIG, ROOT, Daemon, free_port, wait_until
from testkit.otlp_logs import keys, read_logs, send_sdk_logs

OTELCOL = ROOT / ".cache" / "otelcol" / "otelcol-bench"

OTELCOL_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%(grpc)d"}
      http: {endpoint: "127.0.0.1:%(http)d"}
exporters:
  kafka:
    brokers: ["%(broker)s"]
    logs: {topic: "%(topic)s", encoding: otlp_proto}
    traces: {topic: "%(topic)s_spans", encoding: otlp_proto}
service:
  pipelines:
    logs: {receivers: [otlp], exporters: [kafka]}
    traces: {receivers: [otlp], exporters: [kafka]}
  telemetry:
    logs: {level: warn}
    metrics: {level: none}
"""


class Otelcol:
    """One otelcol-bench process: OTLP in on free ports, logs out to the Kafka topic `topic`
    and spans to `<topic>_spans` (each created by the test that uses it)."""

    def __init__(self, broker: str, topic: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="otelcol-logs-"))
        self.grpc, self.http = free_port(), free_port()
        config = OTELCOL_CONFIG % {"grpc": self.grpc, "http": self.http, "broker": broker, "topic": topic}
        (self.dir / "config.yaml").write_text(config)
        self.log_path = self.dir / "otelcol.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Otelcol":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(OTELCOL), "--config", str(self.dir / "config.yaml")],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=60, message=f"otelcol listening (log: {self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"otelcol exited: {self.log_path.read_text()[-3000:]}")
        for port in (self.grpc, self.http):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return False
        return True

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


@pytest.fixture
def otelcol_binary():
    if not OTELCOL.exists():
        pytest.skip(f"{OTELCOL} is missing: `make test` builds it (benchmarks/otelcol)")
    return OTELCOL


@pytest.mark.parametrize("exporter", ["otlp", "otlphttp"])
def test_sdk_logs_reach_a_real_otlp_backend_record_by_record(kafka_broker, otelcol_binary, exporter):
    topic = f"otelcol_logs_{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=1)
    with Otelcol(kafka_broker.bootstrap, topic) as backend:
        settings = (f"endpoint: 127.0.0.1:{backend.grpc}\n    tls: {{insecure: true}}" if exporter == "otlp"
                    else f"endpoint: http://127.0.0.1:{backend.http}")
        overlay = f"""
processors:
  batch: {{timeout: 50ms}}
exporters:
  {exporter}:
    {settings}
    timeout: 5s
service:
  pipelines:
    logs: {{receivers: [otlp], processors: [batch], exporters: [{exporter}]}}
"""
        with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
            sent = send_sdk_logs("http", f"127.0.0.1:{daemon.ports['http']}", count=6, service=f"via-{exporter}")
            got = asyncio.run(read_logs(kafka_broker.bootstrap, topic, len(sent), json=False))
    assert keys(got) == keys(sent)
