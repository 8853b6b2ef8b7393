"""otelcol side by side: the same load through the OpenTelemetry Collector and through agentdbg.

The peer is a real OpenTelemetry Collector (benchmarks/otelcol/: collector v0.165.0, contrib
v0.165.1: otlp receiver, batch processor, otlp_grpc / kafka / nop exporters) that `make bench`
builds from the Go module proxy into `.cache/otelcol/`. In one run, for each pipeline below,
the same seeded agent spans (testkit/fleet.py) go over OTLP gRPC first to otelcol, then to
agentdbg, each with the same settings written out for both (batch 2048 spans or 200 ms, capped
at 2048 so a batch fits a 1 MB Kafka message; gzip on OTLP, the exporters' default; Kafka
`otlp_proto`, `required_acks: all`, so both use the idempotent producer):
- OTLP → batch → OTLP sink: the sink is another otelcol (otlp receiver → nop exporter), fresh
  for each run, so it is never the bottleneck and its accepted-span count says what arrived;
- OTLP → batch → Kafka: the project's test broker (testkit/kafka_broker.py), one topic per run;
  the exporter's sent count (acked by the broker) says when, and the topic is read back after.

Each target runs `--rounds` times per pipeline, the order swapped every round, and its fastest
run is kept. Per run: delivered spans/s (spans ÷ wall time from the first request until every span was
delivered), the collector process's CPU per 1,000 spans (user+system, psutil; the load
generator, the sink and the broker are other processes) and its peak RSS (VmHWM); then
agentdbg ÷ otelcol for each. The bare-parse ceiling (benchmarks/ceiling.py) is run too, as the
reference the other benchmarks use.

    make bench        # builds the collector, then runs every benchmark
    .venv/bin/python -m benchmarks.bench_otelcol [--spans 200000] [--rounds 2] [--no-write]
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from benchmarks.results import table, write_section
from benchmarks.runner import Figures, drive, payloads, run_ceiling
from pipeline.pdata.traces import count_spans, iter_spans
from testkit.harness import BASE_CONFIG, ROOT, Daemon, free_port, metric_value, wait_until
from testkit.kafka_broker import KafkaBroker, read_topic

OTELCOL_BINARY = ROOT / ".cache" / "otelcol" / "otelcol-bench"
BATCH = {"send_batch_size": 2048, "send_batch_max_size": 2048, "timeout": "200ms"}
# otelcol v0.165's Prometheus names carry no `_total`; agentdbg's do.
SENT = {"otelcol": "otelcol_exporter_sent_spans", "agentdbg": "otelcol_exporter_sent_spans_total"}
TARGETS = ("otelcol", "agentdbg")
PIPELINES = (("OTLP → batch → OTLP sink", "otlp_sink"), ("OTLP → batch → Kafka", "kafka"))  # (row, Bench method)
ACCEPTED = "otelcol_receiver_accepted_spans"  # the otelcol sink's

OTELCOL_CONFIG = """
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%(grpc)d", max_recv_msg_size_mib: 64}
processors:
  batch: %(batch)s
exporters:
%(exporters)s
service:
  pipelines:
    traces: {receivers: [otlp], processors: [%(processors)s], exporters: [%(names)s]}
  telemetry:
    logs: {level: warn}
    metrics:
      level: normal
      readers:
        - pull: {exporter: {prometheus: {host: 127.0.0.1, port: %(metrics)d}}}
"""
AGENTDBG_OVERLAY = """
processors:
  batch: %(batch)s
exporters:
%(exporters)s
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [%(names)s]}
"""


def flow(mapping: dict[str, object]) -> str:
    return "{" + ", ".join(f"{key}: {value}" for key, value in mapping.items()) + "}"


class Otelcol:
    """One otelcol-bench process on a generated config; Prometheus metrics on a free port."""

    def __init__(self, exporters: dict[str, str], processors: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="otelcol-"))
        self.grpc, self.metrics_port = free_port(), free_port()
        body = "\n".join(f"  {name}: {settings}" for name, settings in exporters.items())
        config = OTELCOL_CONFIG % {"grpc": self.grpc, "metrics": self.metrics_port, "batch": flow(BATCH),
                                   "exporters": body, "processors": ", ".join(processors),
                                   "names": ", ".join(exporters)}
        (self.dir / "config.yaml").write_text(config)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self) -> "Otelcol":
        if not OTELCOL_BINARY.exists():
            raise SystemExit(f"{OTELCOL_BINARY} is missing: `make bench` builds it")
        self._log = open(self.dir / "otelcol.log", "ab")
        self.proc = subprocess.Popen([str(OTELCOL_BINARY), "--config", str(self.dir / "config.yaml")],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=60, interval=0.1, message=f"otelcol (log: {self.dir / 'otelcol.log'})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"otelcol exited: {(self.dir / 'otelcol.log').read_text()[-3000:]}")
        # The metrics server starts before the pipelines: wait for the receiver's port as well.
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", self.grpc)) != 0:
                return False
        try:
            return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def metrics_text(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text

    def metric(self, name: str) -> float:
        return metric_value(self.metrics_text(), name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
            self._log.close()

    def __enter__(self) -> "Otelcol":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kafka_exporters(topic: str, broker: str) -> tuple[dict[str, str], dict[str, str]]:
    otelcol = {"kafka": flow({"brokers": f"[{broker}]", "traces": flow({"topic": topic, "encoding": "otlp_proto"}),
                              "producer": flow({"required_acks": "all"})})}
    agentdbg = {"kafka": flow({"brokers": f"[{broker}]", "topic": topic, "encoding": "otlp_proto",
                               "producer": flow({"required_acks": "all"})})}
    return otelcol, agentdbg


def otlp_exporters(sink: str) -> tuple[dict[str, str], dict[str, str]]:
    return ({"otlp_grpc": flow({"endpoint": sink, "tls": "{insecure: true}"})},
            {"otlp": flow({"endpoint": sink, "tls": "{insecure: true}"})})


class Bench:
    def __init__(self, data: list[bytes], spans: int, concurrency: int, broker: KafkaBroker) -> None:
        self.data, self.spans, self.concurrency, self.broker = data, spans, concurrency, broker
        self.span_ids = {span.span_id.hex() for wire in data
                         for span in iter_spans(ExportTraceServiceRequest.FromString(wire))}
        self.topics = 0

    def _otelcol(self, exporters: dict[str, str], name: str, delivered: Callable[[Otelcol], bool]) -> Figures:
        with Otelcol(exporters, ["batch"]) as collector:
            return drive(collector.proc.pid, collector.endpoint, self.data, self.spans, self.concurrency, None,
                         name, lambda: delivered(collector))

    def _agentdbg(self, exporters: dict[str, str], name: str, delivered: Callable[[Daemon], bool]) -> Figures:
        body = "\n".join(f"  {exporter}: {settings}" for exporter, settings in exporters.items())
        overlay = AGENTDBG_OVERLAY % {"batch": flow(BATCH), "exporters": body, "names": ", ".join(exporters)}
        with Daemon(BASE_CONFIG, overlay=overlay) as daemon:
            return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", self.data, self.spans,
                         self.concurrency, None, name, lambda: delivered(daemon))

    def otlp_sink(self, target: str) -> Figures:
        """OTLP → batch → OTLP sink, delivered once the sink accepted every span."""
        with Otelcol({"nop": "{}"}, []) as sink:
            otelcol, agentdbg = otlp_exporters(sink.endpoint)
            arrived = lambda _: sink.metric(ACCEPTED) >= self.spans  # noqa: E731
            if target == "otelcol":
                return self._otelcol(otelcol, "otelcol", arrived)
            return self._agentdbg(agentdbg, "agentdbg", arrived)

    def kafka(self, target: str) -> Figures:
        """OTLP → batch → Kafka, delivered once the exporter had every span acked; then read back."""
        self.topics += 1
        topic = f"bench_otelcol_{target}_{self.topics}"
        self.broker.create_topic(topic)
        otelcol, agentdbg = kafka_exporters(topic, self.broker.bootstrap)
        acked = lambda collector: collector.metric(SENT[target]) >= self.spans  # noqa: E731
        figures = (self._otelcol(otelcol, "otelcol", acked) if target == "otelcol"
                   else self._agentdbg(agentdbg, "agentdbg", acked))
        messages = read_topic(self.broker, topic, self.span_ids, timeout=300)
        stored = sum(count_spans(message.request) for message in messages)
        assert stored >= self.spans, f"{target}: {stored} of {self.spans} spans in topic {topic}"
        return figures


def best_of(run: Callable[[str], Figures], rounds: int) -> dict[str, Figures]:
    """Each target's fastest run (earliest last delivery) of `rounds`, the order swapped every
    round so neither always meets a cold broker or a warm page cache."""
    best: dict[str, Figures] = {}
    for round_ in range(rounds):
        for target in TARGETS if round_ % 2 == 0 else TARGETS[::-1]:
            figures = run(target)
            if target not in best or figures.delivered < best[target].delivered:
                best[target] = figures
    return best


def rows_for(pipeline: str, runs: dict[str, Figures]) -> list[list[str]]:
    rows = []
    for target, figures in runs.items():
        rows.append([pipeline, target, f"{figures.spans / figures.delivered:,.0f}",
                     f"{figures.cpu_per_1k * 1000:.2f} ms", f"{figures.peak_rss / 2**20:.0f} MiB"])
    ours, peer = runs["agentdbg"], runs["otelcol"]
    rows.append([pipeline, "**agentdbg ÷ otelcol**",
                 f"{(ours.spans / ours.delivered) / (peer.spans / peer.delivered):.2f}",
                 f"{ours.cpu_per_1k / peer.cpu_per_1k:.2f}", f"{ours.peak_rss / peer.peak_rss:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="runs per target and pipeline; the best is kept")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    data, spans = payloads(args.spans, args.batch_size, seed=7)
    ceiling = run_ceiling(data, spans, args.concurrency, None)
    rows: list[list[str]] = []
    with KafkaBroker(fast_start=False) as broker:  # the JVM's full JIT: the broker must keep up
        bench = Bench(data, spans, args.concurrency, broker)
        for pipeline, run in PIPELINES:
            rows += rows_for(pipeline, best_of(getattr(bench, run), args.rounds))
            print("\n".join(map(str, rows[-3:])), flush=True)
    body = (f"{spans} spans of the seeded agent fleet in {len(data)} OTLP gRPC requests (~{spans // len(data)} spans "
            f"each), {args.concurrency} concurrent senders, the same bytes to each collector in the same run, "
            f"{args.rounds} runs of each per pipeline (the order swapped each round), the fastest kept. Peer: the OpenTelemetry Collector v0.165.0 (contrib "
            "v0.165.1) built from `benchmarks/otelcol/`. Both run `batch` at 2048 spans / 200 ms (capped at 2048, "
            "so a batch fits a 1 MB Kafka message); the OTLP exporters send gzip to a second otelcol (otlp → nop) "
            "whose accepted count is *delivered*; the Kafka exporters write `otlp_proto` with `required_acks: all` "
            "(the idempotent producer in both) to the project's test broker (testkit/kafka_broker.py), *delivered* "
            "once the broker acked every span, and every span is then read back from the topic. Delivered "
            "spans/s is spans ÷ time from the first request to the last delivery. CPU and peak RSS (VmHWM) are "
            "the collector process's own; the load generator, sink and broker share the two cores and are not "
            f"counted. For reference, the bare-parse ceiling (benchmarks/ceiling.py) accepted "
            f"{ceiling.spans_per_s:,.0f} spans/s at {ceiling.cpu_per_1k * 1000:.2f} ms CPU per 1,000 spans.\n\n"
            + table(["pipeline", "collector", "delivered spans/s", "CPU per 1,000 spans", "peak RSS"], rows))
    if not args.no_write:
        write_section("otelcol side by side", "python -m benchmarks.bench_otelcol", body)
    print(body)


if __name__ == "__main__":
    main()
