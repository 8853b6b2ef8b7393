"""Soak: is memory bounded under sustained load, and is everything accepted stored?

Against `config/default.yaml` as shipped (its endpoints and data directory moved to free ports
and a temporary directory, nothing else changed):

1. calibrate (a daemon of its own): offer the seeded fleet as fast as `--concurrency` senders
   go for `--calibrate` seconds; the sustainable rate is `--headroom` (0.8) × the rate at which
   spans were *stored* (chdb's sent count), not merely accepted;
2. soak (a fresh daemon): `--minutes` (10) at that rate, paced open-loop;
3. burst: `--burst-seconds` (60) at `--burst-factor` (10) × that offer. Refused requests are
   retried (after `--retry-pause`) as an OTLP SDK does, so the offer past the sustainable rate
   shows as refusals;
4. drain: the senders finish their retries, then the daemon has stored everything.

It samples the daemon's RSS every second (and the kernel's split into anonymous and
file-backed pages: chDB's 550 MB shared library is file-backed) and reports the peak, the
maximum per minute, the least-squares slope per minute after `--warmup` minutes, the
refusals by status (every one must be retryable) and accepted spans against the rows in the
store once the daemon has stopped.

The load is testkit/fleet.py's seeded fleet. Generating it costs more CPU than the daemon
spends on it, so a pool of requests is built once and sent again with fresh trace ids (the
ids' byte offsets in each request are found once; every round splices in new ids): each
round is new traces, sessions and tool calls to the detectors, as a live fleet would be.

    .venv/bin/python -m benchmarks.bench_soak                 # full: ~15 minutes with calibration
    .venv/bin/python -m benchmarks.bench_soak --minutes 2 --burst-seconds 20 --no-write  # smoke
"""
from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from testkit.fleet import Fleet
from testkit.loadgen import EXPORT
from benchmarks.results import table, write_section
from pipeline.pdata.traces import count_spans
from testkit.harness import ROOT, Daemon, free_port, metric_value, query_json, wait_until

# The "512 MB", read strictly as 512 × 10^6 bytes (488 MiB), the smaller of the two readings.
TARGET_BYTES = 512 * 1000 * 1000
SECTION = "soak: memory under sustained load (config/default.yaml)"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
MIB = 2 ** 20
# default.yaml's endpoints and data directory, moved to the harness's free ports and directory.
ENV_DEFAULTS = {
    "AGENTDBG_OTLP_GRPC_ENDPOINT": "{grpc}", "AGENTDBG_OTLP_HTTP_ENDPOINT": "{http}",
    "AGENTDBG_HEALTH_ENDPOINT": "{health}", "AGENTDBG_DEBUG_ENDPOINT": "{debug}",
    "AGENTDBG_METRICS_ADDRESS": "{metrics}", "AGENTDBG_DATA_DIR": "{dir}",
}


def default_config(root: Path = ROOT) -> str:
    """`root`'s config/default.yaml with `${env:VAR:-default}` of ENV_DEFAULTS turned into the
    harness's placeholders, and any other `AGENTDBG_*_ENDPOINT` moved to a free port."""
    text = (root / "config" / "default.yaml").read_text()
    for var, placeholder in ENV_DEFAULTS.items():
        text = re.sub(r"\$\{env:" + var + r":-[^}]*\}", placeholder, text)
    return re.sub(r"\$\{env:AGENTDBG_\w+_(?:ENDPOINT|ADDRESS):-[^}]*\}", lambda _: f"127.0.0.1:{free_port()}", text)


# -- the load ------------------------------------------------------------------------------------

@dataclass
class Template:
    """One request of the pool, cut at its trace ids: pieces[0] id pieces[1] id ... pieces[-1]."""

    pieces: list[bytes]
    ids: list[int]  # index into the request's trace ids, per cut
    trace_ids: list[bytes]
    spans: int

    def render(self, salt: int) -> bytes:
        fresh = [_salted(trace_id, salt) for trace_id in self.trace_ids]
        out = [self.pieces[0]]
        for index, piece in zip(self.ids, self.pieces[1:]):
            out += (fresh[index], piece)
        return b"".join(out)


def _salted(trace_id: bytes, salt: int) -> bytes:
    return (int.from_bytes(trace_id, "big") ^ salt).to_bytes(16, "big")


def template(request: ExportTraceServiceRequest) -> Template:
    wire = request.SerializeToString()
    trace_ids = list(dict.fromkeys(span.trace_id for rs in request.resource_spans for ss in rs.scope_spans
                                   for span in ss.spans))
    cuts: list[tuple[int, int]] = []
    for index, trace_id in enumerate(trace_ids):
        at = wire.find(trace_id)
        while at >= 0:
            cuts.append((at, index))
            at = wire.find(trace_id, at + 16)
    cuts.sort()
    pieces, ids, last = [], [], 0
    for at, index in cuts:
        pieces.append(wire[last:at])
        ids.append(index)
        last = at + 16
    pieces.append(wire[last:])
    return Template(pieces, ids, trace_ids, count_spans(request))


def pool(spans: int, batch_size: int, seed: int) -> list[Template]:
    fleet, out, total = Fleet(seed=seed), [], 0
    traces = max(1, round(batch_size / 11.7))
    while total < spans:
        out.append(template(fleet.request(traces)))
        total += out[-1].spans
    return out


def requests_of(templates: list[Template], seed: int) -> Iterator[tuple[bytes, int]]:
    """(request, spans) forever: round r sends the pool with trace ids salted by r."""
    rounds = 0
    while True:
        rounds += 1
        salt = (seed << 64 | rounds) * 0x9E3779B97F4A7C15 % (1 << 128) or 1
        for item in templates:
            yield item.render(salt), item.spans


# -- the sender ----------------------------------------------------------------------------------

@dataclass
class Tally:
    requests: int = 0
    accepted_spans: int = 0
    refusals: Counter = field(default_factory=Counter)  # status name → count (retried)
    errors: Counter = field(default_factory=Counter)    # non-retryable: the request is given up


async def offer(target: str, source: Iterator[tuple[bytes, int]], rate: float, seconds: float, tally: Tally,
                concurrency: int, retry_pause: float) -> None:
    """Pace requests at `rate` spans/s (open loop) for `seconds`; each is retried until accepted.
    At most `concurrency` requests are in flight; past that the offer waits (as an SDK's
    exporter queue would, minus its drops)."""
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task] = set()
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        export = channel.unary_unary(EXPORT)

        async def send(payload: bytes, spans: int) -> None:
            try:
                while True:
                    try:
                        await export(payload, timeout=30)
                        tally.requests += 1
                        tally.accepted_spans += spans
                        return
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in RETRYABLE:
                            tally.errors[error.code().name] += 1
                            return
                        tally.refusals[error.code().name] += 1
                    await asyncio.sleep(retry_pause)
            finally:
                slots.release()

        started, offered = loop.time(), 0
        while loop.time() - started < seconds:
            payload, spans = next(source)
            offered += spans
            await asyncio.sleep(max(0.0, started + offered / rate - loop.time()))
            await slots.acquire()
            task = asyncio.create_task(send(payload, spans))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*list(tasks))


# -- the memory curve ----------------------------------------------------------------------------

@dataclass
class Sample:
    t: float
    rss: int
    anon: int
    file: int
    phase: str


class Sampler(threading.Thread):
    """The daemon's RSS once a second, with the kernel's anonymous / file-backed split."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[Sample] = []
        self.phase = "soak"
        self.started = time.monotonic()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                status = status_kib(self.pid)
            except OSError:
                return
            sample = Sample(time.monotonic() - self.started, status["VmRSS"] * 1024, status["RssAnon"] * 1024,
                            status["RssFile"] * 1024, self.phase)
            self.samples.append(sample)
            if len(self.samples) % 30 == 0:
                print(f"{sample.t / 60:5.1f} min {sample.phase}: RSS {sample.rss / MIB:.0f} MiB (anonymous "
                      f"{sample.anon / MIB:.0f})", flush=True)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def status_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def slope_per_minute(samples: list[Sample], attr: str = "rss") -> float:
    """Least-squares slope of `attr` in MiB per minute (0 for fewer than two samples)."""
    if len(samples) < 2:
        return 0.0
    xs = [s.t / 60 for s in samples]
    ys = [getattr(s, attr) / MIB for s in samples]
    return statistics.linear_regression(xs, ys).slope


# -- running it ----------------------------------------------------------------------------------

def chdb_sent(daemon: Daemon) -> float:
    return daemon.metric("otelcol_exporter_sent_spans_total", exporter="chdb")


def evictions(text: str) -> dict[str, float]:
    """agentdbg_trigger_state_evictions_total by `detector/reason`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("agentdbg_trigger_state_evictions_total{"):
            labels, _, value = line.rpartition(" ")
            found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            key = f"{found.get('detector')}/{found.get('reason')}"
            out[key] = out.get(key, 0.0) + float(value)
    return out


def calibrate(templates: list[Template], seconds: float, concurrency: int, seed: int) -> float:
    """Spans/s stored by a fresh default.yaml daemon offered as much as it takes."""
    with Daemon(default_config()) as daemon:
        tally = Tally()
        asyncio.run(offer(f"127.0.0.1:{daemon.ports['grpc']}", requests_of(templates, seed + 1000), 10_000_000,
                          seconds, tally, concurrency, 0.05))
        stored = chdb_sent(daemon)
    return stored / seconds


def soak(templates: list[Template], rate: float, args: argparse.Namespace) -> dict:
    daemon = Daemon(default_config())
    daemon.start()
    target = f"127.0.0.1:{daemon.ports['grpc']}"
    sampler = Sampler(daemon.proc.pid)
    sampler.start()
    source = requests_of(templates, args.seed)
    steady, burst = Tally(), Tally()
    try:
        asyncio.run(offer(target, source, rate, args.minutes * 60, steady, args.concurrency, args.retry_pause))
        sampler.phase = "burst"
        asyncio.run(offer(target, source, rate * args.burst_factor, args.burst_seconds, burst,
                          args.concurrency * args.burst_factor, args.retry_pause))
        sampler.phase = "drain"
        accepted = steady.accepted_spans + burst.accepted_spans
        wait_until(lambda: chdb_sent(daemon) >= accepted, timeout=600, interval=1.0, message="every span stored")
        text = daemon.metrics_text()
        metrics = {
            "receiver_refused": metric_value(text, "otelcol_receiver_refused_spans_total"),
            "limiter_refused": metric_value(text, "agentdbg_processor_refused_items_total", processor="memory_limiter"),
            "queue_refused": metric_value(text, "otelcol_exporter_enqueue_failed_spans_total"),
            "evictions": evictions(text),
        }
    finally:
        sampler.stop()
        code = daemon.stop(timeout=120)
    rows = query_json("SELECT count() AS n FROM otel.otel_traces", "--path", str(daemon.dir / "chdb"))
    return {"steady": steady, "burst": burst, "samples": sampler.samples, "stored": int(rows[0]["n"]),
            "accepted": accepted, "exit": code, "metrics": metrics}


def report(result: dict, rate: float, args: argparse.Namespace) -> str:
    samples: list[Sample] = result["samples"]
    steady = [s for s in samples if s.phase == "soak"]
    after_warmup = [s for s in steady if s.t >= args.warmup * 60]
    second_half = [s for s in steady if s.t >= args.minutes * 30]
    peak = max(samples, key=lambda s: s.rss)
    minutes: dict[int, list[Sample]] = {}
    for s in samples:
        minutes.setdefault(int(s.t // 60), []).append(s)
    rows = [[f"{m}–{m + 1}", group[0].phase, f"{max(s.rss for s in group) / MIB:.0f}",
             f"{max(s.anon for s in group) / MIB:.0f}", f"{max(s.file for s in group) / MIB:.0f}"]
            for m, group in sorted(minutes.items())]
    steady_t, burst_t = result["steady"], result["burst"]
    refusals = steady_t.refusals + burst_t.refusals
    errors = steady_t.errors + burst_t.errors
    verdict_rss = "met" if peak.rss < TARGET_BYTES else "NOT met"
    m = result["metrics"]
    evictions_text = ", ".join(f"{key} {count:,.0f}" for key, count in sorted(m["evictions"].items())) or "none"
    lines = [
        f"Sustainable rate (calibrated: {args.headroom:g} × the stored rate of a fresh daemon offered all it takes): "
        f"**{rate:,.0f} spans/s** for {args.minutes:g} min, then {args.burst_factor:g}× that offer for "
        f"{args.burst_seconds:g} s (refused requests retried after {args.retry_pause:g} s).",
        "",
        f"- peak RSS **{peak.rss / MIB:.0f} MiB** at {peak.t / 60:.1f} min ({peak.phase}); anonymous "
        f"{peak.anon / MIB:.0f} MiB, file-backed {peak.file / MIB:.0f} MiB ({peak.rss / 1e6:.0f} MB). "
        f"Target < 512 MB ({TARGET_BYTES / MIB:.0f} MiB): {verdict_rss}.",
        f"- slope after {args.warmup:g} min of warm-up, steady phase: RSS {slope_per_minute(after_warmup):+.2f} MiB/min, "
        f"anonymous {slope_per_minute(after_warmup, 'anon'):+.2f} MiB/min; over its second half: RSS "
        f"{slope_per_minute(second_half):+.2f} MiB/min, anonymous {slope_per_minute(second_half, 'anon'):+.2f} MiB/min",
        f"- accepted {result['accepted']:,} spans (steady {steady_t.accepted_spans:,}, burst {burst_t.accepted_spans:,}); "
        f"stored {result['stored']:,}: {'equal' if result['stored'] == result['accepted'] else 'DIFFERENT'}",
        f"- refusals (retried): {dict(refusals) or 'none'} (steady {sum(steady_t.refusals.values())}, burst "
        f"{sum(burst_t.refusals.values())}); non-retryable errors: {dict(errors) or 'none'}",
        f"- daemon counters: receiver refused {m['receiver_refused']:,.0f} spans (memory_limiter "
        f"{m['limiter_refused']:,.0f}, full exporter queues {m['queue_refused']:,.0f}); detector state evictions "
        f"{evictions_text}; exit code {result['exit']}",
        "",
        table(["minute", "phase", "max RSS MiB", "max anonymous MiB", "max file-backed MiB"], rows),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--burst-seconds", type=float, default=60.0)
    parser.add_argument("--burst-factor", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="spans/s; default: calibrated")
    parser.add_argument("--calibrate", type=float, default=30.0, help="seconds of the calibration run")
    parser.add_argument("--headroom", type=float, default=0.8)
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the slope")
    parser.add_argument("--batch-size", type=int, default=500, help="spans per request")
    parser.add_argument("--pool", type=int, default=100_000, help="spans in the request pool")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--retry-pause", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    templates = pool(args.pool, args.batch_size, args.seed)
    rate = args.rate or args.headroom * calibrate(templates, args.calibrate, args.concurrency, args.seed)
    print(f"rate {rate:,.0f} spans/s", flush=True)
    body = report(soak(templates, rate, args), rate, args)
    print(body)
    if not args.no_write:
        write_section(SECTION, "python -m benchmarks.bench_soak", body)


if __name__ == "__main__":
    main()
