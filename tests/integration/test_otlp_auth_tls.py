"""OTLP receiver security: bearer tokens (bearertokenauth) and TLS, with the SDK's exporters."""
from __future__ import annotations

import subprocess

import grpc
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

from tests.conftest import require_binary
from testkit.harness import BASE_CONFIG, Daemon, wait_until

AUTH = """
extensions:
  bearertokenauth:
    tokens: [first-token]
    filename: "{{dir}}/tokens.txt"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "{{grpc}}", auth: {{authenticator: bearertokenauth}}}}
      http: {{endpoint: "{{http}}", auth: {{authenticator: bearertokenauth}}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl", flush_interval: 50ms}}
service:
  extensions: [health_check, debug_api, bearertokenauth]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"""


def export_one(exporter) -> SpanExportResult:
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span) -> None:
            results.append(exporter.export([span]))

    provider = TracerProvider()
    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("t").start_as_current_span("call"):
        pass
    provider.shutdown()
    return results[0]


def test_bearer_tokens_guard_both_transports_and_rotate_from_the_file(tmp_path):
    (tmp_path / "tokens.txt").write_text("file-token\n")
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=AUTH.format()) as daemon:
        http = f"http://127.0.0.1:{daemon.ports['http']}/v1/traces"
        grpc_target = f"127.0.0.1:{daemon.ports['grpc']}"
        assert export_one(HttpExporter(http, headers={"Authorization": "Bearer first-token"})) == SpanExportResult.SUCCESS
        assert export_one(GrpcExporter(grpc_target, insecure=True,
                                       headers={"authorization": "Bearer file-token"})) == SpanExportResult.SUCCESS
        refused = requests.post(http, data=b"", headers={"Content-Type": "application/x-protobuf",
                                                           "Authorization": "Bearer wrong"}, timeout=5)
        assert refused.status_code == 401
        channel = grpc.insecure_channel(grpc_target)
        call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as error:
            call(b"", timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        (tmp_path / "tokens.txt").write_text("rotated-token\n")
        assert export_one(HttpExporter(http, headers={"Authorization": "Bearer rotated-token"})) == \
            SpanExportResult.SUCCESS
        assert daemon.metric("agentdbg_receiver_rejected_requests_total", reason="unauthenticated") == 2
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") == 3, message="3 spans written")


TLS = """
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "{{grpc}}", tls: {{cert_file: "{cert}", key_file: "{key}"}}}}
      http: {{endpoint: "{{http}}", tls: {{cert_file: "{cert}", key_file: "{key}"}}}}
exporters:
  file: {{path: "{{dir}}/out.jsonl", flush_interval: 50ms}}
service:
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
"""


def test_tls_receiver_serves_the_sdk_over_https_and_grpcs(tmp_path, monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own CA file
    # (psf/requests#3829); some machines set them, which would hide `certificate_file`.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    openssl = require_binary("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    daemon = Daemon(BASE_CONFIG, workdir=tmp_path, overlay=TLS.format(cert=cert, key=key))
    with daemon:
        https = f"https://localhost:{daemon.ports['http']}/v1/traces"
        assert export_one(HttpExporter(https, certificate_file=str(cert))) == SpanExportResult.SUCCESS
        assert export_one(GrpcExporter(f"localhost:{daemon.ports['grpc']}", insecure=False,
                                       credentials=grpc.ssl_channel_credentials(cert.read_bytes()))) == \
            SpanExportResult.SUCCESS
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"http://localhost:{daemon.ports['http']}/v1/traces", data=b"", timeout=5)
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") == 2, message="2 spans written")
