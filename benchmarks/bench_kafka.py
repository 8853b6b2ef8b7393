"""Kafka exporter: CPU per 1,000 spans to turn a batch into Kafka records, per encoding.

In one run, on the same seeded agent spans, round-robin so that every case sees the same
machine state, it times the kafka exporter's `RecordEncoder.encode` (what `send` does before
handing records to aiokafka) for:
- `otlp_proto` on an unchanged batch: the received wire bytes go out as they are;
- `otlp_proto` on a changed batch: the request is serialised again;
- `otlp_json`;
- `otlp_proto` on a full batch processor batch (8192 spans, over `max_message_bytes`), which
  is split into several messages;
- `otlp_proto` with `partition_traces_by_id`.
Parsing the same wire bytes (what the receiver already paid) is the reference: each figure
is also given as a ratio to it. Producing to a broker is not included: that is aiokafka's
work and the broker's, the same for every row.

    .venv/bin/python -m benchmarks.bench_kafka [--spans 100000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.fleet import Fleet
from benchmarks.results import table, write_section
from exporters.kafka.records import RecordEncoder
from pipeline.pdata.traces import Traces, count_spans

LIMIT = 1_000_000
FULL_BATCH = 8192  # the batch processor's send_batch_size


def payloads(total_spans: int) -> tuple[list[bytes], int]:
    """Requests of ~480 spans (~120 kB), as agents' SDKs send them."""
    fleet, out, spans = Fleet(seed=7), [], 0
    while spans < total_spans:
        request = fleet.request(50)
        out.append(request.SerializeToString())
        spans += count_spans(request)
    return out, spans


def full_batches(wires: list[bytes]) -> list[bytes]:
    """Concatenate requests into batch-processor-sized batches (a valid merged request)."""
    out, current, spans = [], [], 0
    for wire in wires:
        current.append(wire)
        spans += count_spans(ExportTraceServiceRequest.FromString(wire))
        if spans >= FULL_BATCH:
            out.append(b"".join(current))
            current, spans = [], 0
    return out + ([b"".join(current)] if current else [])


Case = tuple[Callable[[], list[Traces]], RecordEncoder | None, list[bytes]]


def unchanged(wires: list[bytes]) -> Callable[[], list[Traces]]:
    return lambda: [Traces.from_wire(wire) for wire in wires]


def changed(wires: list[bytes]) -> Callable[[], list[Traces]]:
    """Batches a processor changed: parsed message, no cached bytes."""
    return lambda: [Traces.from_message(ExportTraceServiceRequest.FromString(wire)) for wire in wires]


def cases(wires: list[bytes]) -> dict[str, Case]:
    big = full_batches(wires)
    return {
        "parse the wire bytes (reference)": (lambda: [], None, wires),
        "otlp_proto, unchanged batch (wire bytes passthrough)": (
            unchanged(wires), RecordEncoder("otlp_proto", False, LIMIT), wires),
        "otlp_proto, changed batch (re-serialised)": (changed(wires), RecordEncoder("otlp_proto", False, LIMIT), wires),
        "otlp_json": (changed(wires), RecordEncoder("otlp_json", False, LIMIT), wires),
        f"otlp_proto, {FULL_BATCH}-span batches split to fit 1 MB": (
            unchanged(big), RecordEncoder("otlp_proto", False, LIMIT), big),
        "otlp_proto, partition_traces_by_id": (unchanged(wires), RecordEncoder("otlp_proto", "trace_id", LIMIT), wires),
    }


def measure(case: Case) -> tuple[float, int]:
    """CPU seconds of one pass, and the number of Kafka messages it made."""
    make, encoder, wires = case
    if encoder is None:
        start = time.process_time()
        for wire in wires:
            ExportTraceServiceRequest.FromString(wire)
        return time.process_time() - start, 0
    batches = make()  # building the inputs is not what is measured
    for batch in batches:
        if not batch.unchanged:
            batch.message  # parsed already, as it is once a processor has changed it
    start = time.process_time()
    messages = sum(len(encoder.encode(batch).records) for batch in batches)
    return time.process_time() - start, messages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    wires, spans = payloads(args.spans)
    table_cases = cases(wires)
    best: dict[str, float] = {name: float("inf") for name in table_cases}
    messages: dict[str, int] = {}
    for _ in range(args.rounds):  # round-robin: every case sees the same machine state
        for name, case in table_cases.items():
            cpu, messages[name] = measure(case)
            best[name] = min(best[name], cpu)
    parse = best["parse the wire bytes (reference)"]
    per_k = lambda cpu: cpu / spans * 1000  # noqa: E731
    rows = [[name, messages[name] or "-", f"{per_k(cpu) * 1000:.3f} ms", f"{cpu / parse:.3f}"]
            for name, cpu in best.items()]
    body = (f"{spans} spans of the seeded agent fleet in {len(wires)} requests (~{spans // len(wires)} spans, "
            f"~{sum(map(len, wires)) // len(wires) // 1000} kB each); `max_message_bytes` {LIMIT}. In-process CPU "
            f"time of `RecordEncoder.encode`, best of {args.rounds} round-robin rounds; the broker is not "
            "involved.\n\n"
            + table(["encoding", "Kafka messages", "CPU per 1,000 spans", "ratio to parse"], rows))
    write_section("kafka exporter encoding", "python -m benchmarks.bench_kafka", body)
    print(body)


if __name__ == "__main__":
    main()
