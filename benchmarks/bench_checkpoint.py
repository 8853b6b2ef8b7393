"""What event time and checkpoints cost the `triggers` connector (issue 16, part 1), in process.

1. The span path with event time against the path it replaced, side by side on the same
   batches, alternated per round: `consume` (event time: the batch's time from its columns, a
   view of it into the reorder buffer) plus `evaluate_due` (the batches the watermark passed,
   observed in order, and the evaluations) against observing each batch on arrival and
   evaluating at the same points. CPU seconds of this thread per 1,000 spans, medians; the
   ratio is what event time adds.
2. A checkpoint of a connector holding `--subjects` services (each with an error-rate window,
   dependency timeouts, a latency baseline and spend): the time
   to take the state on the event loop (`state()`), to encode it (in a worker thread in the
   daemon), its size, the first write to a file_storage file, a write when nothing changed (the
   diff), and a restore into a fresh connector, in keys/s.

    .venv/bin/python -m benchmarks.bench_checkpoint [--subjects 2000] [--batches 200] [--rounds 5]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.results import table, write_section
from connectors.triggers import TriggersConnector
from connectors.triggers.checkpoint import Checkpointer, FileStore, encode_records
from connectors.triggers.config import TriggersConfig
from pipeline.clock import ManualClock
from pipeline.component import ComponentID, Kind, Settings
from pipeline.pdata.traces import Traces
from testkit.trigger_helpers import CLIENT, SERVER, T0, resource, span, traces

SPANS_PER_BATCH = 512


def connector(start: float) -> TriggersConnector:
    settings = replace(Settings.make(Kind.CONNECTOR, ComponentID("triggers", "bench")), clock=ManualClock(start))
    return TriggersConnector(settings, TriggersConfig())


def batch(n: int, subjects: int) -> Traces:
    """One second of load: SERVER spans of a rotating set of services, a few failing, and a few
    timed-out calls and priced LLM calls; received at its second."""
    at = T0 + n
    out = []
    for r in range(8):
        service = f"svc-{(n * 8 + r) % subjects}"
        spans = [span("POST /plan", start=at - 1 + i / 100, duration=0.05, kind=SERVER, error=i % 40 == 0)
                 for i in range(SPANS_PER_BATCH // 8 - 4)]
        spans += [span("GET", start=at - 0.5, duration=0.2, kind=CLIENT, error=True,
                       attrs={"peer.service": "db", "error.type": "ReadTimeout"}) for _ in range(2)]
        spans += [span("chat", start=at - 0.5, duration=0.3, kind=CLIENT, attrs={"gen_ai.usage.cost": 0.001})
                  for _ in range(2)]
        out.append(resource(service, spans))
    return traces(*out, received_at=at)


async def event_time_path(target: TriggersConnector, batches: list[Traces]) -> float:
    clock = target.order.clock
    assert isinstance(clock, ManualClock)
    started = time.thread_time()
    for batch_ in batches:
        await target.consume(batch_)
        await clock.advance_to(batch_.received_at)
        target.evaluate_due()
    target.evaluate_due(flush=True)  # the last allowed_lateness too: the same batches observed as before
    return time.thread_time() - started


def arrival_path(target: TriggersConnector, batches: list[Traces]) -> float:
    """What the connector did before event time: observe on arrival, evaluate at the arrival time."""
    started = time.thread_time()
    for batch_ in batches:
        batch_.capture(target.span_attribute_keys)
        target.prefetch(batch_)
        target._observe(batch_)
        for step in range(4):
            target.evaluate_at(batch_.received_at - 0.75 + step * 0.25)
    return time.thread_time() - started


def fresh(batches: list[Traces]) -> list[Traces]:
    """The same batches without their cached columns (every path builds them once, as on arrival)."""
    return [Traces.from_wire(b.wire(), received_at=b.received_at) for b in batches]


async def span_path(batches: list[Traces], rounds: int) -> list[list[Any]]:
    spans = sum(b.item_count for b in batches)
    new, old = [], []
    for _ in range(rounds):
        new.append(await event_time_path(connector(T0), fresh(batches)) / spans * 1000)
        old.append(arrival_path(connector(T0), fresh(batches)) / spans * 1000)
    ratios = sorted(n / o for n, o in zip(new, old))
    return [["arrival order (before)", f"{statistics.median(old) * 1000:.1f}", "1.00"],
            ["event time (watermark, reorder buffer)", f"{statistics.median(new) * 1000:.1f}",
             f"{statistics.median(ratios):.2f} (rounds {ratios[0]:.2f}-{ratios[-1]:.2f})"]]


async def checkpoint_costs(subjects: int) -> list[list[Any]]:
    target = connector(T0)
    await event_time_path(target, [batch(n, subjects) for n in range(1, subjects // 8 + 12)])
    takes = []
    for _ in range(3):  # the first pays for a garbage collection of the load's garbage: the median
        started = time.perf_counter()
        state = target.state()
        takes.append(time.perf_counter() - started)
    took = statistics.median(takes)
    started = time.perf_counter()
    records = encode_records(state)
    encoding = time.perf_counter() - started
    size = sum(map(len, records.values()))
    with tempfile.TemporaryDirectory() as directory:
        writer = Checkpointer("bench", FileStore(Path(directory)), 1 << 30)
        started = time.perf_counter()
        await writer.save(records)
        first = time.perf_counter() - started
        started = time.perf_counter()
        await writer.save(target.records())
        unchanged = time.perf_counter() - started
        restored = connector(T0)
        restored.checkpointer = Checkpointer("bench", FileStore(Path(directory)), 1 << 30)
        started = time.perf_counter()
        await restored.restore_state()
        restore = time.perf_counter() - started
    return [[f"{len(records):,}", f"{size / 1e6:.1f} MB", f"{took * 1000:.0f} ms", f"{encoding * 1000:.0f} ms",
             f"{first * 1000:.0f} ms",
             f"{unchanged * 1000:.0f} ms", f"{len(records) / restore:,.0f} keys/s"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    batches = [batch(n, 50) for n in range(1, args.batches + 1)]
    span_rows = asyncio.run(span_path(batches, args.rounds))
    checkpoint_rows = asyncio.run(checkpoint_costs(args.subjects))
    body = (f"{args.batches} batches of {SPANS_PER_BATCH} spans (50 services), {args.rounds} rounds alternated; "
            "CPU of this thread per 1,000 spans (consume, the detectors' observe and the evaluations):\n\n"
            + table(["span path", "CPU ms / 1,000 spans", "ratio to before"], span_rows)
            + f"\n\nA checkpoint of a connector holding {args.subjects:,} services (error-rate window, "
              "dependency timeouts, latency baseline, spend), to a file_storage file:\n\n"
            + table(["records", "encoded", "take (on the loop, median of 3)", "encode (worker thread)", "first write",
                     "write, nothing changed", "restore"], checkpoint_rows))
    command = "python -m benchmarks.bench_checkpoint " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items())
    write_section("triggers: event time and checkpoints", command, body)
    print(body)


if __name__ == "__main__":
    main()
