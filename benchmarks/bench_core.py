"""Issue 3's core figure: OTLP gRPC → batch → file(/dev/null) against the bare-parse ceiling.

Interleaves rounds (ceiling, daemon, ceiling, daemon ...) of the same seeded load and
reports medians: accepted spans/s as a ratio of the ceiling (target ≥ 0.5), CPU per
1,000 spans, and peak RSS — at full speed and at 100,000 spans/s offered (target: peak
RSS < 512 MB).

    .venv/bin/python -m benchmarks.bench_core [--spans 200000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.results import table, write_section
from benchmarks.runner import HEADERS, Figures, payloads, run_ceiling, run_daemon

CONFIG = Path(__file__).resolve().parent / "configs" / "file_devnull.yaml"


def median(runs: list[Figures]) -> Figures:
    middle = sorted(runs, key=lambda f: f.spans_per_s)[len(runs) // 2]
    return Figures(middle.name, middle.spans, statistics.median(f.wall for f in runs),
                   statistics.median(f.cpu for f in runs), max(f.peak_rss for f in runs),
                   statistics.median(f.delivered for f in runs))


def rounds(data: list[bytes], spans: int, count: int, rate: float | None, concurrency: int) -> list[list[str]]:
    ceilings, daemons = [], []
    for _ in range(count):
        ceilings.append(run_ceiling(data, spans, concurrency, rate))
        daemons.append(run_daemon(CONFIG.read_text(), data, spans, concurrency, rate,
                                  "daemon: otlp grpc → batch → file(/dev/null)"))
    ceiling = median(ceilings)
    return [ceiling.row(None), median(daemons).row(ceiling)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    data, spans = payloads(args.spans, args.batch_size, seed=7)
    full = rounds(data, spans, args.rounds, None, args.concurrency)
    paced = rounds(data, spans, args.rounds, 100_000, args.concurrency)
    body = (f"{spans} spans of the seeded agent fleet (seed 7) in {len(data)} OTLP gRPC requests of ~"
            f"{spans // len(data)} spans, {args.concurrency} concurrent senders, medians of {args.rounds} "
            "interleaved rounds; config `benchmarks/configs/file_devnull.yaml`. The ceiling is "
            "`benchmarks/ceiling.py`: a bare grpc.aio handler (same uvloop) that only parses each request. "
            "CPU is the server process's own; peak RSS is its VmHWM. The load generator shares the two "
            "cores, so absolute rates are a floor; the ratio is the figure to read.\n\n"
            "As fast as the load generator can send:\n\n" + table(HEADERS, full) +
            "\n\nAt 100,000 spans/s offered:\n\n" + table(HEADERS, paced))
    write_section("core: OTLP gRPC → batch → file(/dev/null) vs the bare-parse ceiling",
                  "python -m benchmarks.bench_core", body)
    print(body)


if __name__ == "__main__":
    main()
