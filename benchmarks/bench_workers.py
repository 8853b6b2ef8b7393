"""Scale-out figures (issue 16): workers on one host, the keyed publication, the evaluator's rate.

1. `service.workers: 1` against `workers: 2`, alternated round by round in one run: the
   collector's span path (`otlp → genai → batch → file(proto)`: one file per worker) under the
   same seeded agent spans, sent over `--connections` gRPC connections (each its own channel and
   subchannel pool, so the kernel's SO_REUSEPORT can spread them). Reported: delivered spans/s
   (until every worker's exporter sent every span) and CPU per span of the whole process tree
   (supervisor and workers; psutil), and their ratio 2:1. The load generator runs in this
   process, on the same 2 cores: what a second worker can add here is bounded by that.
2. The publication, in process on the same batches after the genai processor (the collector
   publishes normalised spans, with cost and sessions): what the kafka exporter does per batch
   without a key (the wire bytes as they are) and with each `partition_by` family (one request
   per key, holding the family's spans), CPU per span and bytes per span published; beside it the
   bytes a per-batch partial aggregate per subject would take (the alternative to spans).
3. The evaluator: each family connector of config/evaluator.yaml, its detectors on its topic's
   records (what the collectors publish), observe plus one evaluation per batch, in CPU seconds
   of this process: spans/s and key updates/s per core (a key update is one key's spans folded
   from one batch).

    .venv/bin/python -m benchmarks.bench_workers [--spans 60000] [--rounds 2] [--connections 16]
"""
from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import grpc
import orjson
import psutil
import yaml

from benchmarks.results import table, write_section
from benchmarks.runner import payloads
from connectors.triggers import DETECTORS
from connectors.triggers.config import TriggersConfig
from exporters.kafka.records import RecordEncoder
from pipeline.component import ComponentID, Kind, Settings, Signal
from pipeline.partitioning import KEYS
from pipeline.pdata.batch import Batch
from pipeline.pdata.traces import Traces
from processors.genai import GenAIConfig, GenAIProcessor
from testkit.harness import (
    BASE_CONFIG,
    ROOT,
    Daemon,
    batch_processor,
    component,
    metric_value,
    pipeline_overlay,
    wait_until,
)
from testkit.loadgen import EXPORT

SECTION = "scale-out: workers, keyed publication, evaluator"
COMMAND = "python -m benchmarks.bench_workers"
# otlp → genai → batch → file(proto): the collector's span path, with a file per worker.
PIPELINE = pipeline_overlay(component("file", path='"{dir}/spans.bin"', format="proto"),
                            component("genai") + batch_processor("100ms"))


# -- 1. workers ------------------------------------------------------------------------------------

async def send(target: str, data: list[bytes], connections: int) -> None:
    """Every payload once, over `connections` connections of their own."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for payload in data:
        queue.put_nowait(payload)

    async def connection() -> None:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_send_message_length", 64 << 20)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            export = channel.unary_unary(EXPORT)
            while not queue.empty():
                payload = queue.get_nowait()
                while True:
                    try:
                        await export(payload, timeout=30)
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                            raise
                        await asyncio.sleep(0.05)

    await asyncio.gather(*(connection() for _ in range(connections)))


def tree_cpu(pid: int) -> float:
    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def sent(daemon: Daemon) -> tuple[float, list[float]]:
    text = daemon.metrics_text()
    shares = [metric_value(text, "otelcol_exporter_sent_spans_total", worker=str(w)) for w in range(2)]
    return metric_value(text, "otelcol_exporter_sent_spans_total"), shares


def run_workers(count: int, data: list[bytes], spans: int, connections: int) -> dict[str, Any]:
    with Daemon(BASE_CONFIG, overlay=[PIPELINE, f"service:\n  workers: {count}\n"]) as daemon:
        if count > 1:
            wait_until(lambda: all(metric_value(daemon.metrics_text(), "agentdbg_worker_up", worker=str(w)) == 1
                                   for w in range(count)), timeout=120, message="every worker up")
        assert daemon.proc is not None
        cpu_before, started = tree_cpu(daemon.proc.pid), time.monotonic()
        asyncio.run(send(f"127.0.0.1:{daemon.ports['grpc']}", data, connections))
        wait_until(lambda: sent(daemon)[0] >= spans, timeout=600, interval=0.05, message="every span delivered")
        wall = time.monotonic() - started
        cpu = tree_cpu(daemon.proc.pid) - cpu_before
        _, shares = sent(daemon)
    return {"rate": spans / wall, "cpu_per_span": cpu / spans, "shares": shares if count > 1 else [spans]}


# -- 2. the publication ---------------------------------------------------------------------------

def partial_bytes(batch: Traces) -> int:
    """A per-batch partial aggregate per subject, as compact JSON: per service the span count,
    errors, summed log-duration and slowest span; per (service, dependency) timeouts; per
    service cost. What a collector would publish instead of spans (keys as the families')."""
    cols = batch.columns
    per_service: dict[str, list[float]] = {}
    for service, status, duration in zip(cols.service, cols.status_code, cols.duration_ns):
        slot = per_service.setdefault(service, [0, 0, 0.0, 0])
        slot[0] += 1
        slot[1] += status == 2
        slot[2] += duration
        slot[3] = max(slot[3], duration)
    dependencies = Counter(key for key in KEYS["service_dependency"](cols) if key is not None)
    costs = Counter(key for key in KEYS["budget_owner"](cols) if key is not None)
    body = {"s": per_service, "d": {k.decode(): v for k, v in dependencies.items()},
            "c": {k.decode(): v for k, v in costs.items()}}
    return len(orjson.dumps(body))


class _Kept:
    def __init__(self) -> None:
        self.wires: list[bytes] = []

    async def consume(self, batch: Batch) -> None:
        self.wires.append(batch.wire())


def normalised(data: list[bytes]) -> list[bytes]:
    """The requests as the collector publishes them: through the genai processor (cost, sessions)."""
    kept = _Kept()
    genai = GenAIProcessor(Settings.make(Kind.PROCESSOR, ComponentID("genai"), Signal.TRACES), GenAIConfig(), kept)

    async def run() -> None:
        for wire in data:
            await genai.consume(Traces.from_wire(wire))

    asyncio.run(run())
    return kept.wires


def publication(data: list[bytes], rounds: int) -> list[list[str]]:
    encoders = {"no key (wire bytes as received)": RecordEncoder("otlp_proto", None, 1_000_000),
                **{f"partition_by: {family}": RecordEncoder("otlp_proto", family, 1_000_000) for family in KEYS}}
    best: dict[str, float] = {}
    size: dict[str, int] = {}
    spans = 0
    for _ in range(rounds):
        for name, encoder in encoders.items():
            batches = [Traces.from_wire(wire) for wire in data]
            for batch in batches:
                batch.columns  # noqa: B018 - built upstream (genai, triggers) in a collector
            started = time.process_time()
            records = [record for batch in batches for record in encoder.encode(batch).records]
            elapsed = time.process_time() - started
            best[name] = min(best.get(name, elapsed), elapsed)
            size[name] = sum(len(r.value) + len(r.key or b"") for r in records)
            spans = sum(batch.item_count for batch in batches)
    reference = best["no key (wire bytes as received)"]
    rows = [[name, f"{best[name] / spans * 1e6:.2f} µs", f"{best[name] / reference:.1f}x",
             f"{size[name] / spans:.0f} B"] for name in encoders]
    partial = sum(partial_bytes(Traces.from_wire(wire)) for wire in data)
    rows.append(["per-batch partial aggregates (all families, for comparison)", "-", "-", f"{partial / spans:.1f} B"])
    return rows


# -- 3. the evaluator -----------------------------------------------------------------------------

def family_detectors() -> dict[str, tuple[str, list[str]]]:
    """{family connector: (its receiver's key_family, the detectors it runs)}, from the shipped
    config/evaluator.yaml."""
    shipped = yaml.safe_load((ROOT / "config" / "evaluator.yaml").read_text())
    out = {}
    for pipeline in shipped["service"]["pipelines"].values():
        receiver, connector = pipeline["receivers"][0], pipeline["exporters"][0]
        if not connector.startswith("triggers/"):
            continue  # the events pipeline
        off = {d for d, block in (shipped["connectors"][connector] or {}).items() if block == {"enabled": False}}
        out[connector] = (shipped["receivers"][receiver]["key_family"], [d for d in DETECTORS if d not in off])
    return out


def evaluator(data: list[bytes], rounds: int) -> list[list[str]]:
    """Per family connector: its detectors on its topic's records, one evaluation per batch."""
    config, rows = TriggersConfig(), []
    for connector, (family, names) in family_detectors().items():
        encoder = RecordEncoder("otlp_proto", family, 1_000_000)  # type: ignore[arg-type]
        # What the receiver hands the connector: one poll's records of a partition, merged.
        records = [batch for batch in (encoder.encode(Traces.from_wire(wire)).records for wire in data) if batch]
        best, key_updates, spans = float("inf"), 0, 0
        for _ in range(rounds):
            detectors = [DETECTORS[name](getattr(config, name)) for name in names]
            batches = [Traces.from_wire(b"".join(r.value for r in batch)) for batch in records]
            key_updates = sum(len({r.key for r in batch}) for batch in records)
            spans = sum(batch.item_count for batch in batches)
            now = time.time()
            started = time.process_time()
            for n, batch in enumerate(batches):
                batch.received_at = now + n * 0.01
                for detector in detectors:
                    detector.observe(batch)
                for detector in detectors:
                    detector.evaluate(batch.received_at)
            best = min(best, time.process_time() - started)
        rows.append([f"`{connector}` ({', '.join(names)})", f"{spans:,}", f"{spans / best:,.0f}",
                     f"{key_updates / best:,.0f}", f"{len({r.key for batch in records for r in batch}):,}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    data, spans = payloads(args.spans, 500, seed=16)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for count in (1, 2):
            runs[count].append(run_workers(count, data, spans, args.connections))
    data = normalised(data)
    worker_rows, ratios = [], []
    for n in range(args.rounds):
        one, two = runs[1][n], runs[2][n]
        ratios.append((two["rate"] / one["rate"], two["cpu_per_span"] / one["cpu_per_span"]))
        for count, figures in ((1, one), (2, two)):
            worker_rows.append([f"round {n + 1}: workers: {count}", f"{figures['rate']:,.0f}",
                                f"{figures['cpu_per_span'] * 1e6:.0f} µs",
                                " / ".join(f"{share / spans:.0%}" for share in figures["shares"])])
    ratio_text = "; ".join(f"round {n + 1}: {rate:.2f}x spans/s, {cpu:.2f}x CPU per span"
                           for n, (rate, cpu) in enumerate(ratios))
    body = "\n\n".join([
        f"{spans:,} seeded agent spans in requests of ~500 over {args.connections} gRPC connections; "
        f"`otlp → genai → batch → file(proto)`; the load generator shares the 2 cores.",
        table(["daemon", "delivered spans/s", "CPU per span (process tree)", "spans per worker"], worker_rows),
        f"workers: 2 against workers: 1, same run: {ratio_text}.",
        "Keyed publication (the kafka exporter's encoding before aiokafka; best of "
        f"{args.rounds} rounds, in process):",
        table(["publication", "CPU per span", "vs no key", "bytes per span"], publication(data, args.rounds)),
        "Evaluator (in process, CPU time of one core; the receiver's decode and Kafka are not counted):",
        table(["evaluator connector (config/evaluator.yaml)", "spans in", "spans/s per core",
               "key updates/s per core", "distinct keys"], evaluator(data, args.rounds)),
    ])
    write_section(SECTION, COMMAND, body)
    print(body)


if __name__ == "__main__":
    main()
