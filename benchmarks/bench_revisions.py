"""Before and after: this checkout against an earlier revision, side by side in one run.

A refactor promises unchanged behaviour and unchanged speed. This runs the same seeded load
through the same pipelines on two revisions of the code, alternating them row by row and
round by round so that the machine's noise falls on both alike, and reports this checkout's
figures as ratios of the earlier revision's:

- delivered spans/s (every exporter of the pipeline has sent every span);
- the daemon's CPU per 1,000 spans;
- peak RSS.

The earlier revision runs from a git worktree in the ignored cache (`.cache/revisions/<sha>`),
made on first use; both run with this checkout's virtualenv. The pipelines are three of
bench_pipeline's rows (no backend, the embedded store, Kafka) and each revision's own
`config/default.yaml` (receiver → memory_limiter → genai → redaction → batch → chdb, and the
triggers and safety pipelines), which measures what a user of the default gets.

The benchmark learns that every span was delivered by scraping the daemon's `/metrics` every
20 ms, and a scrape costs the daemon a few ms of CPU (more series, more cost): so the daemon
CPU reported is less the benchmark's own scrapes, each priced by scraping the idle daemon
again after the run. The table gives the CPU ratio of every round, so its spread is in view.

On a shared machine CPU time is noisy (±15 % from one round to the next here). `--callgrind`
adds a second, steady measure for the thinnest pipeline: valgrind's callgrind counts the
instructions the pipeline executes per span, in process (benchmarks/revision_driver.py: the
real service, its receiver's gRPC handler called directly; gRPC's transport, the same library
in both, left out), warm-up round excluded. Instruction counts do not depend on the load.

    .venv/bin/python -m benchmarks.bench_revisions --base 59f15f1 [--spans 100000 --rounds 2] [--callgrind]

What the profile of issue 10's house work (base 59f15f1) found on otlp → batch → file(proto),
per request of ~480 spans, in process (revision_driver.py under cProfile for call counts and
under callgrind for instructions): about 1,540 Python calls against 1,520, nearly all of them
the receiver's three `len()` id checks per span in both; the added ones are the id check's
per-scope generator and callback (`drop_bad`, ~17 a request), `Traces.__init__`'s call of
`OtlpBatch.__init__`, and the processor's entry count. The processor helper's wrappers, the
clock and the fan-out's attribute capture come to about 6,000 instructions a request out of
~4.5 million (the receiver's fan-out with the entry count and its prometheus `Counter.inc`,
measured alone; the two coroutine frames taken out since saved 1,500 of them). The 1.20x CPU of
an earlier run was the machine's noise plus this benchmark's own `/metrics` polling inside the
CPU window (fixed above).
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

import psutil

from benchmarks.bench_pipeline import PIPELINES, Backends, overlay
from benchmarks.bench_soak import default_config
from benchmarks.results import table, write_section
from benchmarks.runner import Figures, drive, every_exporter_sent, payloads
from testkit.harness import BASE_CONFIG, ROOT, Daemon

ROWS = ["otlp → batch → file(proto)", "otlp → batch → chdb", "otlp → batch → kafka"]
DEFAULT_ROW = "config/default.yaml (chdb, triggers, safety)"
SECTION = "before and after: this checkout against an earlier revision"
SCRAPE_SAMPLES = 20
CALLGRIND_ROW = ROWS[0]  # the thinnest pipeline: per-request work shows most there
CALLGRIND_ROUNDS = 3


def worktree(base: str) -> tuple[Path, str]:
    """The worktree of `base` (made once, in the ignored cache) and its full sha."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{base}^{{commit}}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    path = ROOT / ".cache" / "revisions" / sha[:12]
    if not (path / "pipeline").is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path, sha


def chdb_stored(daemon: Daemon, spans: int) -> bool:
    """The default config's span store has sent every span (its event exporters count other things)."""
    for line in daemon.metrics_text().splitlines():
        if line.startswith("otelcol_exporter_sent_spans_total{") and 'exporter="chdb"' in line:
            return float(line.rpartition(" ")[2]) >= spans
    return False


class Polling:
    """The delivery check, counting the `/metrics` scrapes it makes (each is CPU of the daemon's)."""

    def __init__(self, daemon: Daemon, check: Callable[[Daemon, int], bool], spans: int) -> None:
        self.daemon, self.check, self.spans, self.scrapes = daemon, check, spans, 0

    def __call__(self) -> bool:
        self.scrapes += 1
        return self.check(self.daemon, self.spans)

    def scrape_cpu(self, samples: int = SCRAPE_SAMPLES) -> float:
        """The daemon's CPU seconds per scrape, measured on the idle daemon after the run."""
        assert self.daemon.proc is not None
        process = psutil.Process(self.daemon.proc.pid)
        before = process.cpu_times()
        for _ in range(samples):
            self.daemon.metrics_text()
        after = process.cpu_times()
        return ((after.user + after.system) - (before.user + before.system)) / samples


def configuration(row: str, source: Path, backends: Backends) -> tuple[str, str | None, Callable[[Daemon, int], bool]]:
    """The row's config and overlay for `source`'s code, and how to tell every span was delivered."""
    if row == DEFAULT_ROW:
        return default_config(source), None, chdb_stored
    processors, exporters = PIPELINES[row]
    return BASE_CONFIG, overlay(processors, exporters, backends.endpoints_for(exporters)), every_exporter_sent


def run_row(row: str, source: Path, data: list[bytes], spans: int, concurrency: int,
            backends: Backends) -> Figures:
    config, settings, delivered = configuration(row, source, backends)
    with Daemon(config, overlay=settings, source=source) as daemon:
        polling = Polling(daemon, delivered, spans)
        figures = drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, None, row,
                        polling)
        return replace(figures, cpu=figures.cpu - polling.scrapes * polling.scrape_cpu())


def instructions_per_span(row: str, source: Path, data: list[bytes], spans: int, backends: Backends) -> float:
    """Callgrind's instruction count per span of the pipeline in process (revision_driver.py), over
    the rounds after the first (warm-up: first imports, first allocations)."""
    config, settings, _ = configuration(row, source, backends)
    daemon = Daemon(config, overlay=settings, source=source)  # writes the config files; not started
    payload_file = daemon.dir / "payloads.bin"
    payload_file.write_bytes(b"".join(struct.pack(">I", len(request)) + request for request in data))
    payload_file.with_suffix(".spans").write_text(str(spans))
    sources = [str(daemon.config_path)] + ([str(daemon.dir / "overlay.yaml")] if settings else [])
    out = daemon.dir / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                    sys.executable, str(ROOT / "benchmarks" / "revision_driver.py"), str(payload_file), *sources,
                    "--rounds", str(CALLGRIND_ROUNDS), "--callgrind"],
                   cwd=source, env={**os.environ, "PYTHONPATH": str(source)}, check=True, capture_output=True)
    rounds = [callgrind_total(daemon.dir / f"callgrind.out.{number}") for number in range(1, CALLGRIND_ROUNDS + 1)]
    return statistics.mean(rounds[1:]) / spans


def callgrind_total(path: Path) -> int:
    """The instructions one callgrind dump counted."""
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def ratio(after: list[Figures], before: list[Figures], key: str) -> float:
    """Median over rounds of after/before, each round's pair measured back to back."""
    return statistics.median(getattr(a, key) / getattr(b, key) for a, b in zip(after, before))


def measure(base: Path, data: list[bytes], spans: int, concurrency: int, rounds: int
            ) -> dict[str, tuple[list[Figures], list[Figures]]]:
    results: dict[str, tuple[list[Figures], list[Figures]]] = {}
    backends = Backends()
    try:
        for row in [*ROWS, DEFAULT_ROW]:
            after, before = results.setdefault(row, ([], []))
            for number in range(rounds):
                # Alternate which revision goes first, so a warming machine favours neither.
                order = [(ROOT, after), (base, before)] if number % 2 == 0 else [(base, before), (ROOT, after)]
                for source, out in order:
                    out.append(run_row(row, source, data, spans, concurrency, backends))
                    print(row, "this" if source == ROOT else "base", f"{spans / out[-1].delivered:,.0f} spans/s",
                          flush=True)
    finally:
        backends.close()
    return results


def report(results: dict[str, tuple[list[Figures], list[Figures]]], sha: str, head: str, rounds: int,
           instructions: dict[str, tuple[float, float]]) -> str:
    rows = []
    for row, (after, before) in results.items():
        base_rate = statistics.median(f.spans / f.delivered for f in before)
        this_rate = statistics.median(f.spans / f.delivered for f in after)
        per_round = ", ".join(f"{a.cpu_per_1k / b.cpu_per_1k:.2f}" for a, b in zip(after, before))
        rows.append([row, f"{base_rate:,.0f}", f"{this_rate:,.0f}",
                     f"{statistics.median(b.delivered / a.delivered for a, b in zip(after, before)):.2f}",
                     f"{ratio(after, before, 'cpu_per_1k'):.2f} ({per_round})",
                     f"{statistics.median(b.cpu_per_1k for b in before) * 1000:.2f} ms",
                     f"{ratio(after, before, 'peak_rss'):.2f}"])
    lines = [
        f"Base {sha[:12]}, this checkout {head[:12]}; {rounds} rounds per row, the two revisions alternated; "
        "ratios are this checkout's over the base's (median of the rounds' pairs, each round's in brackets): "
        "above 1 is faster for spans/s, below 1 is cheaper for CPU and RSS. CPU is the daemon's until every "
        "span was delivered, less the benchmark's own `/metrics` scrapes.", "",
        table(["pipeline", "base delivered spans/s", "this delivered spans/s", "spans/s ratio",
               "CPU per 1,000 spans ratio (rounds)", "base CPU per 1,000 spans", "peak RSS ratio"], rows)]
    for row, (this, base) in instructions.items():
        lines += ["", f"Instructions per span, in process under callgrind ({row}; warm-up round left out): "
                  f"base {base:,.0f}, this {this:,.0f}, ratio {this / base:.3f}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier revision (any git revision)")
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--callgrind", action="store_true",
                        help=f"also count instructions per span of {CALLGRIND_ROW} (valgrind; minutes)")
    parser.add_argument("--callgrind-spans", type=int, default=20_000)
    args = parser.parse_args()
    base, sha = worktree(args.base)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    data, spans = payloads(args.spans, args.batch_size, args.seed)
    instructions = {}
    if args.callgrind:
        small, small_spans = payloads(args.callgrind_spans, args.batch_size, args.seed)
        backends = Backends()
        try:
            # Both revisions at once: an instruction count does not depend on what else runs.
            with ThreadPoolExecutor(2) as pool:
                this, before = pool.map(lambda source: instructions_per_span(CALLGRIND_ROW, source, small,
                                                                             small_spans, backends), [ROOT, base])
            instructions[CALLGRIND_ROW] = (this, before)
        finally:
            backends.close()
        print(instructions, flush=True)
    body = report(measure(base, data, spans, args.concurrency, args.rounds), sha, head, args.rounds, instructions)
    print(body)
    if not args.no_write:
        flags = " --callgrind" if args.callgrind else ""
        write_section(SECTION, f"python -m benchmarks.bench_revisions --base {args.base} --spans {args.spans} "
                      f"--rounds {args.rounds}{flags}", body)


if __name__ == "__main__":
    main()
