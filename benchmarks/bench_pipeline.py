"""Pipelines and exporters against the bare-parse ceiling, in one run.

Runs the bare grpc.aio parse-only handler (benchmarks/ceiling.py) and then the daemon as a
subprocess for each pipeline below, sends each the same seeded agent spans over OTLP gRPC,
waits until every exporter of the pipeline has sent every span, and reports delivered
spans/s as a ratio of the ceiling, the daemon's own CPU per 1,000 spans (psutil: the
backends and the load generator are other processes and are not counted) and peak RSS.

The exporter rows run against real backends started for the run, on this machine:
- `chdb`: the embedded engine, inside the daemon, so its CPU is counted;
- `clickhouse`: the chDB-backed ClickHouse HTTP *test* endpoint (testkit/clickhouse_http.py),
  a separate process: the figure is the daemon's CPU (columns, Native serialisation, HTTP),
  not ClickHouse's;
- `kafka`: Apache Kafka, one KRaft node (testkit/kafka_broker.py), a separate JVM; `otlp_proto`
  passthrough, the default idempotent producer with `required_acks: all`;
- `otlp`: Jaeger v2 (testkit/jaeger.py, memory storage; built by `make test`), the OTLP backend
  the same exporter serves for Tempo or any other.

    .venv/bin/python -m benchmarks.bench_pipeline [--spans 200000]
"""
from __future__ import annotations

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

from benchmarks.results import table, write_section
from benchmarks.runner import PIPELINE_HEADERS, payloads, run_ceiling, run_daemon
from testkit.clickhouse_http import ClickHouseHTTP
from testkit.harness import BASE_CONFIG
from testkit.kafka_broker import KafkaBroker
from testkit.jaeger import JAEGER_BINARY, Jaeger

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
    "otlp → batch → [kafka, clickhouse, otlp (Jaeger)]": (["batch"], FANOUT),
}
# exporter id → its settings; %(name)s are the endpoints of the backends started for the run.
EXPORTERS = {
    "file/file_proto": '{path: "{dir}/out.bin", format: proto}',
    "file/file_json": '{path: "{dir}/out.jsonl", format: json}',
    "chdb": '{path: "{dir}/chdb"}',
    "clickhouse": "{endpoint: %(clickhouse)s, async_insert: false}",
    "kafka": "{brokers: [%(kafka)s], topic: bench_spans}",
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
            "kafka": self._kafka, "clickhouse": self._clickhouse, "otlp": self._jaeger}

    def _kafka(self) -> str:
        broker = self._stack.enter_context(KafkaBroker(fast_start=False))  # full JIT: it must keep up
        broker.create_topic("bench_spans")  # auto-creation is off
        return broker.bootstrap

    def _clickhouse(self) -> str:
        return self._stack.enter_context(ClickHouseHTTP(self.dir / "clickhouse")).url

    def _jaeger(self) -> str:
        jaeger = self._stack.enter_context(Jaeger(JAEGER_BINARY, self.dir / "jaeger"))
        return jaeger.grpc_endpoint

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


def measure(data: list[bytes], spans: int, concurrency: int) -> list[list[str]]:
    ceiling = run_ceiling(data, spans, concurrency, None)
    rows = [ceiling.row(None)]
    backends = Backends()
    try:
        for name, (processors, exporters) in PIPELINES.items():
            config = overlay(processors, exporters, backends.endpoints_for(exporters))
            figures = run_daemon(BASE_CONFIG, data, spans, concurrency, None, name, overlay=config)
            rows.append(figures.row(ceiling, delivered=True))
            print(rows[-1], flush=True)
    finally:
        backends.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data, spans = payloads(args.spans, args.batch_size, seed=7)
    rows = measure(data, spans, args.concurrency)
    body = (f"{spans} spans of the seeded agent fleet in {len(data)} OTLP gRPC requests (~{spans // len(data)} spans "
            f"each), {args.concurrency} concurrent senders. The ratio is *delivered* spans/s (until every exporter "
            "had sent every span) over the ceiling's spans/s: `benchmarks/ceiling.py`, a bare grpc.aio handler "
            "that only parses, driven by the same load in the same run. "
            "CPU is the daemon process's user+system time (psutil), so the load generator's "
            "and the backends' CPU is not counted; the `chdb` engine runs inside the daemon and is counted. "
            "Backends, all on this 2-core machine: `clickhouse` writes to the chDB-backed ClickHouse HTTP *test* "
            "endpoint (testkit/clickhouse_http.py), so its figure is the daemon's CPU, not ClickHouse's; `kafka` "
            "produces to Apache Kafka (one KRaft node; `otlp_proto`, wire bytes passed through; idempotent "
            "producer, acks all); `otlp` sends to Jaeger v2 (memory storage), an OTLP backend as Tempo is. "
            "The load generator and the backends share the "
            "two cores with the daemon, so absolute rates are a floor.\n\n"
            + table(PIPELINE_HEADERS, rows))
    write_section("pipeline core throughput", "python -m benchmarks.bench_pipeline", body)
    print(body)


if __name__ == "__main__":
    main()
