"""Run a load against the daemon (any YAML) and against the bare-parse ceiling, side by side.

For each target it reports accepted spans/s (spans ÷ wall time until the last request was
answered), the target process's CPU seconds per 1,000 spans (psutil: the load generator's
own CPU is not counted) and its peak RSS (the kernel's VmHWM). The load is the seeded
agent fleet (testkit/fleet.py: LLM, tool and agent spans with gen_ai attributes), sent
over OTLP gRPC with `--batch-size` spans per request and `--concurrency` senders, at full
speed or paced to `--rate` spans/s.

    python -m benchmarks.runner --config benchmarks/configs/file_devnull.yaml --spans 200000 \\
        --batch-size 500 --concurrency 8 --seed 7 [--rate 100000]

The config may use the placeholders of testkit/harness.py (`{grpc}`, `{http}`, `{metrics}`,
`{health}`, `{dir}`); receivers, health_check and metrics must use them.
"""
from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from testkit.fleet import Fleet
from testkit.loadgen import post_grpc
from benchmarks.results import table
from pipeline.pdata.traces import count_spans
from testkit.harness import ROOT, Daemon, free_port, wait_until


@dataclass
class Figures:
    name: str
    spans: int
    wall: float       # until the last request was answered (accepted)
    cpu: float        # until every span was delivered by every exporter (daemon) or parsed (ceiling)
    peak_rss: int
    delivered: float  # wall time until every exporter had sent every span

    @property
    def spans_per_s(self) -> float:
        return self.spans / self.wall

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu / self.spans * 1000

    def row(self, ceiling: "Figures | None", delivered: bool = False) -> list[str]:
        """`delivered`: the ratio compares delivered (not accepted) spans/s with the ceiling."""
        rate = self.spans / self.delivered if delivered else self.spans_per_s
        ratio = f"{rate / ceiling.spans_per_s:.2f}" if ceiling else "1.00"
        return [self.name, f"{self.spans_per_s:,.0f}", ratio, f"{self.spans / self.delivered:,.0f}",
                f"{self.cpu_per_1k * 1000:.2f} ms", f"{self.peak_rss / 2**20:.0f} MiB"]


HEADERS = ["target", "accepted spans/s", "ratio to ceiling", "delivered spans/s", "CPU per 1,000 spans",
           "peak RSS"]
PIPELINE_HEADERS = ["target", "accepted spans/s", "delivered/ceiling", "delivered spans/s", "CPU per 1,000 spans",
                    "peak RSS"]


def payloads(spans: int, batch_size: int, seed: int) -> tuple[list[bytes], int]:
    """Requests of about `batch_size` spans each (a trace averages ~12 spans)."""
    fleet, out, total = Fleet(seed=seed), [], 0
    traces = max(1, round(batch_size / 11.7))
    while total < spans:
        request = fleet.request(traces)
        out.append(request.SerializeToString())
        total += count_spans(request)
    return out, total


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def drive(pid: int, target: str, data: list[bytes], spans: int, concurrency: int, rate: float | None,
          name: str, delivered: Callable[[], bool] = lambda: True) -> Figures:
    """Send the load; CPU and RSS are read once `delivered()` says every span went out."""
    process = psutil.Process(pid)
    before, started = process.cpu_times(), time.monotonic()
    asyncio.run(post_grpc(target, data, concurrency, rate, spans / len(data)))
    wall = time.monotonic() - started
    wait_until(delivered, timeout=600, interval=0.02, message="every span delivered")
    done, after = time.monotonic() - started, process.cpu_times()
    cpu = (after.user + after.system) - (before.user + before.system)
    return Figures(name, spans, wall, cpu, peak_rss(pid), done)


def run_ceiling(data: list[bytes], spans: int, concurrency: int, rate: float | None) -> Figures:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ceiling", "--port", str(port)], cwd=ROOT)
    try:
        import grpc

        wait_until(lambda: _grpc_ready(grpc, port), timeout=20, message="ceiling server")
        return drive(proc.pid, f"127.0.0.1:{port}", data, spans, concurrency, rate, "bare grpc.aio parse (ceiling)")
    finally:
        proc.terminate()
        proc.wait(10)


def _grpc_ready(grpc, port: int) -> bool:
    try:
        grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(timeout=0.5)
        return True
    except grpc.FutureTimeoutError:
        return False


def every_exporter_sent(daemon: Daemon, spans: int) -> bool:
    """True once each exporter's sent count reached `spans` (one scrape per call)."""
    counts: dict[str, float] = {}
    for line in daemon.metrics_text().splitlines():
        if line.startswith("otelcol_exporter_sent_spans_total{"):
            labels, _, value = line.rpartition(" ")
            counts[labels] = float(value)
    return bool(counts) and min(counts.values()) >= spans


def run_daemon(config: str, data: list[bytes], spans: int, concurrency: int, rate: float | None,
               name: str, overlay: str | None = None, source: Path = ROOT) -> Figures:
    """One daemon of `source`'s code (this checkout, or another revision's worktree) under the load."""
    with Daemon(config, overlay=overlay, source=source) as daemon:
        return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, rate, name,
                     lambda: every_exporter_sent(daemon, spans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--spans", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=float, default=None, help="offered spans/s (default: as fast as possible)")
    args = parser.parse_args()
    data, spans = payloads(args.spans, args.batch_size, args.seed)
    ceiling = run_ceiling(data, spans, args.concurrency, args.rate)
    daemon = run_daemon(Path(args.config).read_text(), data, spans, args.concurrency, args.rate, args.config)
    print(table(HEADERS, [ceiling.row(None), daemon.row(ceiling)]))


if __name__ == "__main__":
    main()
