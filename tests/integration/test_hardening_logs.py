"""Issue 9, point 8: a gRPC client aimed at the OTLP/HTTP port.

A real gRPC client calls TraceService/Export on the HTTP port, several times. The operator
must see one warning line naming the endpoint, not an error with a multi-line aiohttp
traceback per request (before the fix: level=error "Error handling request" and a traceback
for each call), and the daemon keeps serving real OTLP/HTTP.
"""
from __future__ import annotations

import grpc
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.harness import BASE_CONFIG, Daemon, file_exporter, pipeline_overlay

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def test_grpc_client_at_http_port_makes_one_warning(tmp_path):
    with Daemon(BASE_CONFIG, workdir=tmp_path, overlay=pipeline_overlay(file_exporter())) as daemon:
        http = f"127.0.0.1:{daemon.ports['http']}"
        with grpc.insecure_channel(http) as channel:
            export = channel.unary_unary(EXPORT)
            codes = []
            for _ in range(10):
                try:
                    export(ExportTraceServiceRequest().SerializeToString(), timeout=5)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 10
        # Still an OTLP/HTTP server for real clients.
        answer = requests.post(f"http://{http}/v1/traces", data=ExportTraceServiceRequest().SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}, timeout=5)
        assert answer.status_code == 200
    log = daemon.log()
    assert "Traceback" not in log and "level=error" not in log, log
    warnings = [line for line in log.splitlines() if "not valid HTTP/1.x" in line]
    assert len(warnings) == 1, log
    assert "level=warning" in warnings[0] and f"endpoint={http}" in warnings[0]
