"""Pipeline core: CPU seconds per 1,000 spans through a running daemon, per configuration.

Runs the daemon as a subprocess for each pipeline below, posts the same seeded agent
spans (OTLP/HTTP protobuf and OTLP/gRPC, 4 concurrent senders), waits until the exporter
has written every span, and reads the daemon's own CPU time. In the same run it measures,
in-process, what parsing the same payloads costs, so every figure is also a ratio to the
unavoidable parse.

    .venv/bin/python -m benchmarks.bench_pipeline [--spans 200000]
"""
from __future__ import annotations

import argparse
import asyncio
import time

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.fleet import Fleet
from benchmarks.loadgen import post_grpc, post_http
from benchmarks.results import table, write_section
from pipeline.traces import count_spans
from tests.harness import BASE_CONFIG, Daemon, wait_until

PIPELINES = {
    "otlp → file(proto)": ([], "file_proto"),
    "otlp → batch → file(proto)": (["batch"], "file_proto"),
    "otlp → memory_limiter → batch → file(proto)": (["memory_limiter", "batch"], "file_proto"),
    "otlp → batch → file(json)": (["batch"], "file_json"),
}

OVERLAY = """
processors:
  batch: {{timeout: 200ms}}
  memory_limiter: {{check_interval: 1s, limit_percentage: 90}}
exporters:
  file/file_proto: {{path: "{{dir}}/out.bin", format: proto}}
  file/file_json: {{path: "{{dir}}/out.jsonl", format: json}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [{processors}], exporters: [file/{exporter}]}}
"""


def payloads(total_spans: int) -> tuple[list[bytes], int]:
    fleet, out, spans = Fleet(seed=7), [], 0
    while spans < total_spans:
        request = fleet.request(50)
        out.append(request.SerializeToString())
        spans += count_spans(request)
    return out, spans


def parse_cpu(data: list[bytes]) -> float:
    start = time.process_time()
    for payload in data:
        ExportTraceServiceRequest.FromString(payload)
    return time.process_time() - start


def run_daemon(processors: list[str], exporter: str, data: list[bytes], spans: int, transport: str) -> float:
    overlay = OVERLAY.format(processors=", ".join(processors), exporter=exporter)
    with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
        process = psutil.Process(daemon.proc.pid)
        before = process.cpu_times()
        if transport == "http":
            asyncio.run(post_http(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data))
        else:
            asyncio.run(post_grpc(f"127.0.0.1:{daemon.ports['grpc']}", data))
        wait_until(lambda: daemon.metric("otelcol_exporter_sent_spans_total") >= spans, timeout=120,
                   message="every span exported")
        after = process.cpu_times()
    return (after.user + after.system) - (before.user + before.system)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    args = parser.parse_args()
    data, spans = payloads(args.spans)
    parse = min(parse_cpu(data) for _ in range(3))
    per_k = lambda cpu: cpu / spans * 1000  # noqa: E731
    rows = [["in-process parse only (reference)", "-", f"{per_k(parse) * 1000:.2f} ms", "1.00"]]
    for name, (processors, exporter) in PIPELINES.items():
        for transport in ("http", "grpc"):
            cpu = run_daemon(processors, exporter, data, spans, transport)
            rows.append([name, transport, f"{per_k(cpu) * 1000:.2f} ms", f"{cpu / parse:.1f}"])
            print(rows[-1], flush=True)
    body = (f"{spans} spans of the seeded agent fleet in {len(data)} requests (~{spans // len(data)} spans each), "
            "4 concurrent senders. CPU is the daemon process's user+system time, so the load generator's own "
            "CPU is not counted.\n\n"
            + table(["pipeline", "transport", "daemon CPU per 1,000 spans", "ratio to parse"], rows))
    write_section("pipeline core throughput", "python -m benchmarks.bench_pipeline", body)
    print(body)


if __name__ == "__main__":
    main()
