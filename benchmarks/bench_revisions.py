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

    .venv/bin/python -m benchmarks.bench_revisions --base 59f15f1 [--spans 100000 --rounds 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
from pathlib import Path

from benchmarks.bench_pipeline import PIPELINES, Backends, overlay
from benchmarks.bench_soak import default_config
from benchmarks.results import table, write_section
from benchmarks.runner import Figures, drive, every_exporter_sent, payloads
from testkit.harness import BASE_CONFIG, ROOT, Daemon

ROWS = ["otlp → batch → file(proto)", "otlp → batch → chdb", "otlp → batch → kafka"]
DEFAULT_ROW = "config/default.yaml (chdb, triggers, safety)"
SECTION = "before and after: this checkout against an earlier revision"


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


def run_row(row: str, source: Path, data: list[bytes], spans: int, concurrency: int,
            backends: Backends) -> Figures:
    if row == DEFAULT_ROW:
        config, settings, delivered = default_config(source), None, chdb_stored
    else:
        processors, exporters = PIPELINES[row]
        config, settings = BASE_CONFIG, overlay(processors, exporters, backends.endpoints_for(exporters))
        delivered = every_exporter_sent
    with Daemon(config, overlay=settings, source=source) as daemon:
        return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, None, row,
                     lambda: delivered(daemon, spans))


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


def report(results: dict[str, tuple[list[Figures], list[Figures]]], sha: str, head: str, rounds: int) -> str:
    rows = []
    for row, (after, before) in results.items():
        base_rate = statistics.median(f.spans / f.delivered for f in before)
        this_rate = statistics.median(f.spans / f.delivered for f in after)
        rows.append([row, f"{base_rate:,.0f}", f"{this_rate:,.0f}",
                     f"{statistics.median(b.delivered / a.delivered for a, b in zip(after, before)):.2f}",
                     f"{ratio(after, before, 'cpu_per_1k'):.2f}", f"{ratio(after, before, 'peak_rss'):.2f}"])
    return "\n".join([
        f"Base {sha[:12]}, this checkout {head[:12]}; {rounds} rounds per row, the two revisions alternated; "
        "ratios are this checkout's over the base's (median of the rounds' pairs): above 1 is faster for "
        "spans/s, below 1 is cheaper for CPU and RSS.", "",
        table(["pipeline", "base delivered spans/s", "this delivered spans/s", "spans/s ratio",
               "CPU per 1,000 spans ratio", "peak RSS ratio"], rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the earlier revision (any git revision)")
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base, sha = worktree(args.base)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()
    data, spans = payloads(args.spans, args.batch_size, args.seed)
    body = report(measure(base, data, spans, args.concurrency, args.rounds), sha, head, args.rounds)
    print(body)
    if not args.no_write:
        write_section(SECTION, f"python -m benchmarks.bench_revisions --base {args.base} --spans {args.spans} "
                      f"--rounds {args.rounds}", body)


if __name__ == "__main__":
    main()
