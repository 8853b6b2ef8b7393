"""Issue 9 point 5's cost: config/default.yaml with and without its durable queue, same run.

`durable` is config/default.yaml as shipped: the chdb exporter's sending queue is on disk
(file_storage), so the batch processor also appends each request to its write-ahead log
before the answer. `in memory` is the same file with `sending_queue.storage` removed (what
the default was before: a SIGKILL lost acked spans). Both get the same seeded agent fleet
over OTLP gRPC, in interleaved rounds (in memory, durable, in memory, durable ...), and the
medians are compared: delivered spans/s (until chdb had stored every span), CPU seconds of
the daemon per 1,000 spans, peak RSS; at full speed, and paced below both rates to show
the CPU cost at the same offered load. On a shared machine those daemon figures are noisy,
so it also times the log's own work in process (one append per request, the same payloads):
a figure that does not depend on what else runs.

    .venv/bin/python -m benchmarks.bench_durability [--spans 60000] [--rounds 3] [--rate 5000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_core import median
from benchmarks.results import table, write_section
from benchmarks.runner import Figures, drive, payloads
from extensions.file_storage import WriteAheadLog
from pipeline.pdata.traces import Traces
from testkit.harness import BASE_CONFIG, ROOT, Daemon

DEFAULT = (ROOT / "config" / "default.yaml").read_text()
# Over default.yaml + BASE_CONFIG (free loopback ports; BASE_CONFIG's extension list drops
# file_storage, so each variant names its own).
DURABLE = "service: {extensions: [health_check, debug_api, file_storage]}\n"
IN_MEMORY = "exporters: {chdb: {sending_queue: {storage: null}}}\n"
VARIANTS = {"in memory (storage removed)": IN_MEMORY, "durable (default.yaml as shipped)": DURABLE}
HEADERS = ["default.yaml", "delivered spans/s", "ratio", "CPU per 1,000 spans", "ratio", "peak RSS"]


def run(variant: str, data: list[bytes], spans: int, concurrency: int, rate: float | None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="bench-durability-") as directory:
        workdir = Path(directory)
        daemon = Daemon(DEFAULT, workdir=workdir, env={"AGENTDBG_DATA_DIR": str(workdir / "data")},
                        overlay=[BASE_CONFIG, VARIANTS[variant]])
        with daemon:
            return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, rate, variant,
                         lambda: daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb") >= spans)


def rows(data: list[bytes], spans: int, count: int, concurrency: int, rate: float | None) -> list[list[str]]:
    runs: dict[str, list[Figures]] = {name: [] for name in VARIANTS}
    for _ in range(count):
        for name in VARIANTS:
            runs[name].append(run(name, data, spans, concurrency, rate))
    base, durable = (median(runs[name]) for name in VARIANTS)
    out = []
    for figures in (base, durable):
        delivered = figures.spans / figures.delivered
        out.append([figures.name, f"{delivered:,.0f}", f"{delivered / (base.spans / base.delivered):.2f}",
                    f"{figures.cpu_per_1k * 1000:.2f} ms", f"{figures.cpu_per_1k / base.cpu_per_1k:.2f}",
                    f"{figures.peak_rss / 2**20:.0f} MiB"])
    return out


def append_seconds(data: list[bytes], passes: int = 5) -> float:
    """Median seconds to append every request to a write-ahead log segment, in process."""
    batches = [Traces.from_wire(payload) for payload in data]
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-wal-") as directory:
        for _ in range(passes):
            segment = WriteAheadLog(Path(directory), fsync=False).open_segment()
            started = time.perf_counter()
            for batch in batches:
                segment.append(batch)
            times.append(time.perf_counter() - started)
            segment.remove()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=5_000, help="offered spans/s of the paced rounds")
    args = parser.parse_args()
    data, spans = payloads(args.spans, args.batch_size, seed=7)
    load_before = os.getloadavg()[0]
    full = rows(data, spans, args.rounds, args.concurrency, None)
    paced = rows(data, spans, args.rounds, args.concurrency, args.rate)
    append = append_seconds(data)
    load = f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    body = (f"{spans} spans of the seeded agent fleet (seed 7) in {len(data)} OTLP gRPC requests of ~"
            f"{spans // len(data)} spans, {args.concurrency} concurrent senders, medians of {args.rounds} "
            "interleaved rounds. `durable` is `config/default.yaml` as shipped (chdb `sending_queue.storage: "
            "file_storage`: every request goes to the batch processor's write-ahead log, every merged batch "
            "to the chdb queue's file, before the answer); `in memory` is the same file with the storage "
            "removed. Delivered = stored by chDB; CPU is the daemon's own; ratios are to `in memory`. "
            f"Load average of the 2-core machine (1 min): {load}; above ~2, other work shares the cores and "
            "the daemon figures move by ±20 % from run to run.\n\n"
            "As fast as the load generator can send:\n\n" + table(HEADERS, full) +
            f"\n\nAt {args.rate:,.0f} spans/s offered:\n\n" + table(HEADERS, paced) +
            f"\n\nThe write-ahead log's own work, in process (no fsync): {append / len(data) * 1e6:.0f} µs per "
            f"request of ~{spans // len(data)} spans, {append / spans * 1e6:.2f} ms of CPU per 1,000 spans; the "
            "chdb queue adds one file per merged batch (up to 8,192 spans).")
    write_section("durability: default.yaml with and without its durable queue",
                  "python -m benchmarks.bench_durability", body)
    print(body)


if __name__ == "__main__":
    main()
