"""The compiled hot path (native/, issue 15): config/default.yaml before and after, against the
ceiling, and the genai processor's overhead, all measured side by side in one run.

Rows, in every round (their order alternates round by round, so a warming machine favours none):
- the bare grpc.aio parse ceiling (benchmarks/ceiling.py);
- config/default.yaml of this checkout and of the base revision (a worktree in the ignored cache,
  as bench_revisions makes it; both run with this venv), delivered = the chDB store sent all;
- `otlp → batch → file(proto)` with and without `genai` in front of the batch processor.

Reported: delivered spans/s and its share of the same round's ceiling, the daemon's CPU per
1,000 spans, peak RSS; ratios are medians over rounds of pairs measured back to back. With
`--profile`, py-spy then samples this checkout's default.yaml under the same load and the top
frames by self time go to a second section.

    .venv/bin/python -m benchmarks.bench_native --base b91ea08 [--spans 100000 --rounds 3 --profile]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from benchmarks.bench_pipeline import overlay
from benchmarks.bench_revisions import chdb_stored, worktree
from benchmarks.bench_soak import default_config
from benchmarks.bench_triggers import retried
from benchmarks.profile_pipeline import aggregate
from benchmarks.results import table, write_section
from benchmarks.runner import Figures, drive, every_exporter_sent, payloads, run_ceiling
from testkit.harness import BASE_CONFIG, ROOT, Daemon, wait_until

CEILING = "bare grpc.aio parse (ceiling)"
DEFAULT, BASE_DEFAULT = "config/default.yaml (this checkout)", "config/default.yaml (base)"
PLAIN, GENAI = "otlp → batch → file(proto)", "otlp → genai → batch → file(proto)"
ROWS = [CEILING, DEFAULT, BASE_DEFAULT, PLAIN, GENAI]


def stored(daemon: Daemon, spans: int) -> bool:
    """chdb_stored, with a scrape that times out on the loaded machine read as not yet."""
    try:
        return chdb_stored(daemon, spans)
    except requests.RequestException:
        return False


@contextmanager
def started(daemon: Daemon) -> Iterator[Daemon]:
    """The daemon, given up to 3 minutes to become healthy (its 30 s default is too short for
    default.yaml's start on the shared machine at a load average of 40+)."""
    daemon.start(wait=False)
    try:
        wait_until(daemon.healthy, timeout=180, message=f"daemon health (log: {daemon.log_path})")
        yield daemon
    finally:
        daemon.stop()


def run_default(source: Path, data: list[bytes], spans: int, concurrency: int, name: str) -> Figures:
    with started(Daemon(default_config(source), source=source)) as daemon:
        return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, None, name,
                     lambda: stored(daemon, spans))


def run_file(processors: list[str], data: list[bytes], spans: int, concurrency: int, name: str) -> Figures:
    settings = overlay(processors, ["file/file_proto"], {}).replace("processors:\n", "processors:\n  genai: {}\n", 1)
    with started(Daemon(BASE_CONFIG, overlay=settings)) as daemon:
        return drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, None, name,
                     lambda: every_exporter_sent(daemon, spans))


def run_row(row: str, base: Path, data: list[bytes], spans: int, concurrency: int) -> Figures:
    if row == CEILING:
        return run_ceiling(data, spans, concurrency, None)
    if row in (DEFAULT, BASE_DEFAULT):
        return run_default(ROOT if row == DEFAULT else base, data, spans, concurrency, row)
    return run_file(["genai", "batch"] if row == GENAI else ["batch"], data, spans, concurrency, row)


def measure(base: Path, data: list[bytes], spans: int, concurrency: int, rounds: int) -> list[dict[str, Figures]]:
    out: list[dict[str, Figures]] = []
    for number in range(rounds):
        order = ROWS if number % 2 == 0 else ROWS[::-1]
        # A daemon that could not start in time on the loaded machine is started again (not counted).
        figures = {row: retried(lambda row=row: run_row(row, base, data, spans, concurrency))  # type: ignore[misc]
                   for row in order}
        out.append(figures)
        print(f"round {number + 1}: " + ", ".join(f"{row} {f.spans / f.delivered:,.0f} spans/s "
                                                   f"{f.cpu_per_1k * 1000:.1f} ms/1k" for row, f in figures.items()),
              flush=True)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], digits: int = 3) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def report(results: list[dict[str, Figures]], sha: str, spans: int) -> str:
    def rate(f: Figures) -> float:
        return f.spans / f.delivered

    rows = []
    for row in ROWS:
        share = [rate(r[row]) / r[CEILING].spans_per_s for r in results]
        rows.append([row, f"{median([rate(r[row]) for r in results]):,.0f}",
                     f"{median(share):.3f} ({spread(share)})",
                     f"{median([r[row].cpu_per_1k * 1000 for r in results]):.2f} ms",
                     f"{median([r[row].peak_rss / 2**20 for r in results]):.0f} MiB"])
    speed = [rate(r[DEFAULT]) / rate(r[BASE_DEFAULT]) for r in results]
    cpu = [r[DEFAULT].cpu_per_1k / r[BASE_DEFAULT].cpu_per_1k for r in results]
    genai_cpu = [r[GENAI].cpu_per_1k / r[PLAIN].cpu_per_1k for r in results]
    return "\n".join([
        f"{spans:,} seeded agent spans (testkit/fleet.py) in requests of ~500 over 8 gRPC connections, "
        f"{len(results)} rounds; base revision {sha[:12]}. The ceiling row's share is accepted spans/s over "
        "itself; every other share is delivered spans/s over the same round's ceiling (median, and the "
        "spread over rounds). CPU is the daemon's own (psutil) until every span was delivered. The "
        "load generator and 7 other sessions share the 2 cores, so absolute figures are low; the ratios "
        "are the comparison.", "",
        table(["target", "delivered spans/s", "share of ceiling", "CPU per 1,000 spans", "peak RSS"], rows), "",
        f"default.yaml, this checkout over the base in the same rounds: {median(speed):.2f}x delivered spans/s "
        f"({spread(speed, 2)}), {median(cpu):.2f}x CPU per span ({spread(cpu, 2)}). genai overhead: "
        f"{median(genai_cpu):.2f}x the CPU per span of the same pipeline without it ({spread(genai_cpu, 2)}).",
    ])


PROFILE_NOTES = """

Reading it: py-spy without `--native` counts time in the extension to the Python frame that
called it, so `SpanColumns._pass` is the compiled attribute pass and `GenAIProcessor.process`'s
self time holds the compiled pick and splice. What is left on the Python side per span is the
genai processor's decisions (`Normaliser.span` and its helpers: alias rules, token arithmetic,
price lookups, per GenAI span) and the detectors' own loops; the rest of the samples are not
per-span Python: the chDB engine (`Connection.query`), the memory limiter's page release
(`pipeline/residency.py`), the Prometheus exposition (the benchmark scrapes `/metrics` every
20 ms to see delivery), and the chDB writer's Native encoding in clickhouse-connect
(`_write_column_binary`), still Python (docs/native.md: what is left)."""


def profile(data: list[bytes], spans: int, concurrency: int, top: int) -> str:
    out = Path(tempfile.mkdtemp(prefix="bench-native-")) / "profile.txt"
    with started(Daemon(default_config(ROOT))) as daemon:
        spy = subprocess.Popen([shutil.which("py-spy") or str(ROOT / ".venv/bin/py-spy"), "record", "--pid",
                                str(daemon.proc.pid), "--format", "raw", "--rate", "200", "--threads",
                                "--nonblocking", "--output", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, concurrency, None, DEFAULT,
              lambda: stored(daemon, spans))
        spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
        spy.wait(60)
    own, inclusive, total = aggregate(out.read_text())
    rows = [[frame, f"{count / total:.1%}", f"{inclusive[frame] / total:.1%}"] for frame, count in own.most_common(top)]
    return (f"py-spy (200 Hz, every thread) on this checkout's config/default.yaml under {spans:,} spans; "
            f"{total:,} samples. Self: samples whose innermost frame is the function; inclusive: anywhere on "
            "the stack.\n\n" + table(["frame", "self", "inclusive"], rows) + PROFILE_NOTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the revision before the compiled hot path")
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-only", action="store_true", help="the profile alone, no before/after rounds")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base, sha = worktree(args.base)
    data, spans = payloads(args.spans, 500, seed=7)
    command = f"python -m benchmarks.bench_native --base {args.base} --spans {args.spans} --rounds {args.rounds}"
    if not args.profile_only:
        body = report(measure(base, data, spans, args.concurrency, args.rounds), sha, spans)
        print(body)
        if not args.no_write:
            write_section("compiled hot path: default.yaml before and after, genai overhead", command, body)
    if args.profile or args.profile_only:
        found = profile(data, spans, args.concurrency, args.top)
        print(found)
        if not args.no_write:
            profiled = command.split(" --rounds")[0] + " --profile-only"
            write_section("compiled hot path: profile of default.yaml", profiled, found)


if __name__ == "__main__":
    main()
