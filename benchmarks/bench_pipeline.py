"""Pipeline core and exporters: CPU seconds per 1,000 spans through a running daemon, per configuration.

Runs the daemon as a subprocess for each pipeline below, posts the same seeded agent
spans (OTLP/HTTP protobuf and OTLP/gRPC, 4 concurrent senders), waits until every exporter
of the pipeline has sent every span, and reads the daemon's own CPU time (psutil: the
backends and the load generator are other processes and are not counted). In the same run
it measures, in-process, what parsing the same payloads costs, so every figure is also a
ratio to the unavoidable parse.

The exporter rows run against real backends started for the run, on this machine:
- `chdb`: the embedded engine, inside the daemon, so its CPU is counted;
- `clickhouse`: the chDB-backed ClickHouse HTTP *test* endpoint (tests/clickhouse_http.py),
  a separate process: the figure is the daemon's CPU (columns, Native serialisation, HTTP),
  not ClickHouse's;
- `kafka`: Tansu (tests/kafka_broker.py), a separate process; `otlp_proto` passthrough;
- `otlp`: a second daemon (tests/otlp_sink.py, file exporter in protobuf) standing in for Tempo.

    .venv/bin/python -m benchmarks.bench_pipeline [--spans 200000]
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.fleet import Fleet
from benchmarks.loadgen import post_grpc, post_http
from benchmarks.results import table, write_section
from pipeline.traces import count_spans
from tests.clickhouse_http import ClickHouseHTTP
from tests.harness import BASE_CONFIG, Daemon, metric_value, wait_until
from tests.kafka_broker import KafkaBroker
from tests.otlp_sink import sink_daemon

FANOUT = ["kafka", "clickhouse", "otlp"]
# pipeline name → (processors, exporters)
PIPELINES: dict[str, tuple[list[str], list[str]]] = {
    "otlp → file(proto)": ([], ["file/file_proto"]),
    "otlp → batch → file(proto)": (["batch"], ["file/file_proto"]),
    "otlp → memory_limiter → batch → file(proto)": (["memory_limiter", "batch"], ["file/file_proto"]),
    "otlp → batch → file(json)": (["batch"], ["file/file_json"]),
    "otlp → batch → chdb": (["batch"], ["chdb"]),
    "otlp → batch → clickhouse": (["batch"], ["clickhouse"]),
    "otlp → batch → kafka": (["batch"], ["kafka"]),
    "otlp → batch → [kafka, clickhouse, otlp sink]": (["batch"], FANOUT),
}
# exporter id → its settings; %(name)s are the endpoints of the backends started for the run.
EXPORTERS = {
    "file/file_proto": '{path: "{dir}/out.bin", format: proto}',
    "file/file_json": '{path: "{dir}/out.jsonl", format: json}',
    "chdb": '{path: "{dir}/chdb"}',
    "clickhouse": "{endpoint: %(clickhouse)s, async_insert: false}",
    "kafka": "{brokers: [%(kafka)s], topic: bench_spans, producer: {enable_idempotence: false}}",
    "otlp": "{endpoint: %(otlp)s, tls: {insecure: true}}",
}
OVERLAY = """
processors:
  batch: {timeout: 200ms}
  memory_limiter: {check_interval: 1s, limit_percentage: 90}
exporters:
%(exporters)s
service:
  pipelines:
    traces: {receivers: [otlp], processors: [%(processors)s], exporters: [%(names)s]}
"""


class Backends:
    """The services exporters talk to, each started on first use and all stopped by `close()`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-backends-"))
        self.endpoints: dict[str, str] = {}
        self._stack = ExitStack()
        self._starters: dict[str, Callable[[], str]] = {
            "kafka": self._kafka, "clickhouse": self._clickhouse, "otlp": self._otlp_sink}

    def _kafka(self) -> str:
        return self._stack.enter_context(KafkaBroker()).bootstrap

    def _clickhouse(self) -> str:
        return self._stack.enter_context(ClickHouseHTTP(self.dir / "clickhouse")).url

    def _otlp_sink(self) -> str:
        sink = self._stack.enter_context(sink_daemon(self.dir / "sink", "proto"))
        return f"127.0.0.1:{sink.ports['grpc']}"

    def endpoints_for(self, exporters: list[str]) -> dict[str, str]:
        for name in exporters:
            if name in self._starters and name not in self.endpoints:
                self.endpoints[name] = self._starters[name]()
        return self.endpoints

    def close(self) -> None:
        self._stack.close()


def overlay(processors: list[str], exporters: list[str], endpoints: dict[str, str]) -> str:
    settings = "\n".join(f"  {name}: {EXPORTERS[name] % endpoints}" for name in exporters)
    return OVERLAY % {"exporters": settings, "processors": ", ".join(processors), "names": ", ".join(exporters)}


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


@dataclass
class Run:
    cpu: float   # daemon user+system seconds
    wall: float  # first request sent → every exporter has sent every span


def all_sent(daemon: Daemon, exporters: list[str], spans: int) -> bool:
    """Every exporter has sent `spans` (one scrape: each costs the daemon ~1 ms of CPU)."""
    text = daemon.metrics_text()
    return all(metric_value(text, "otelcol_exporter_sent_spans_total", exporter=name) >= spans for name in exporters)


def run_daemon(config: str, exporters: list[str], data: list[bytes], spans: int, transport: str) -> Run:
    with Daemon(BASE_CONFIG, overlay=config) as daemon:
        process = psutil.Process(daemon.proc.pid)
        before, started = process.cpu_times(), time.monotonic()
        if transport == "http":
            asyncio.run(post_http(f"http://127.0.0.1:{daemon.ports['http']}/v1/traces", data))
        else:
            asyncio.run(post_grpc(f"127.0.0.1:{daemon.ports['grpc']}", data))
        wait_until(lambda: all_sent(daemon, exporters, spans), timeout=300, interval=0.05,
                   message="every span exported")
        wall, after = time.monotonic() - started, process.cpu_times()
    return Run((after.user + after.system) - (before.user + before.system), wall)


def measure(data: list[bytes], spans: int, parse: float) -> list[list[str]]:
    rows = [["in-process parse only (reference)", "-", f"{parse / spans * 1e6:.2f} ms", "1.00", "-"]]
    backends = Backends()
    try:
        for name, (processors, exporters) in PIPELINES.items():
            config = overlay(processors, exporters, backends.endpoints_for(exporters))
            for transport in ("http", "grpc"):
                run = run_daemon(config, exporters, data, spans, transport)
                rows.append([name, transport, f"{run.cpu / spans * 1e6:.2f} ms", f"{run.cpu / parse:.1f}",
                             f"{spans / run.wall:,.0f}"])
                print(rows[-1], flush=True)
    finally:
        backends.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    args = parser.parse_args()
    data, spans = payloads(args.spans)
    parse = min(parse_cpu(data) for _ in range(3))
    rows = measure(data, spans, parse)
    body = (f"{spans} spans of the seeded agent fleet in {len(data)} requests (~{spans // len(data)} spans each), "
            "4 concurrent senders. CPU is the daemon process's user+system time (psutil), so the load generator's "
            "and the backends' CPU is not counted; the `chdb` engine runs inside the daemon and is counted. "
            "Backends, all on this 2-core machine: `clickhouse` writes to the chDB-backed ClickHouse HTTP *test* "
            "endpoint (tests/clickhouse_http.py), so its figure is the daemon's CPU, not ClickHouse's; `kafka` "
            "produces to Tansu (`otlp_proto`, wire bytes passed through); `otlp` sends to a second daemon "
            "(file exporter, protobuf) standing in for Tempo. Spans/s is wall time from the first request to "
            "the last span sent by every exporter, with the load generator and the backends sharing the "
            "two cores: a floor, not the daemon's ceiling.\n\n"
            + table(["pipeline", "transport", "daemon CPU per 1,000 spans", "ratio to parse", "spans/s (wall)"],
                    rows))
    write_section("pipeline core throughput", "python -m benchmarks.bench_pipeline", body)
    print(body)


if __name__ == "__main__":
    main()
