"""Where the full fan-out spends its time: py-spy samples the daemon while it exports to
Kafka, ClickHouse and an OTLP sink at once, and the top entries go to RESULTS.md.

Self time is the share of samples whose innermost frame is the function; inclusive time
the share of samples with the function anywhere on the stack (all threads: the event loop
and the exporters' worker threads).

    .venv/bin/pip install -e '.[bench]'      # py-spy
    .venv/bin/python -m benchmarks.profile_pipeline [--spans 150000]
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks.bench_pipeline import FANOUT, Backends, overlay
from benchmarks.results import table, write_section
from benchmarks.runner import drive, every_exporter_sent, payloads
from testkit.harness import BASE_CONFIG, Daemon

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def short(frame: str) -> str:
    """`func (path/to/module.py:12)` → `module.py:func` (site-packages and stdlib paths trimmed)."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{match['func']}"


def aggregate(raw: str) -> tuple[Counter[str], Counter[str], int]:
    own, inclusive, total = Counter(), Counter(), 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ") and not
                  f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return own, inclusive, total


def profile(spans_wanted: int, out: Path) -> tuple[str, int]:
    data, spans = payloads(spans_wanted, 500, seed=7)
    backends = Backends()
    try:
        config = overlay(["batch"], FANOUT, backends.endpoints_for(FANOUT))
        with Daemon(BASE_CONFIG, overlay=config) as daemon:
            spy = subprocess.Popen([shutil.which("py-spy") or ".venv/bin/py-spy", "record", "--pid",
                                    str(daemon.proc.pid), "--format", "raw", "--rate", "200", "--threads",
                                    "--nonblocking", "--output", str(out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            drive(daemon.proc.pid, f"127.0.0.1:{daemon.ports['grpc']}", data, spans, 8, None, "fan-out",
                  lambda: every_exporter_sent(daemon, spans))
            spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
            spy.wait(60)
    finally:
        backends.close()
    return out.read_text(), spans


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=150_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    raw, spans = profile(args.spans, Path(tempfile.mkdtemp()) / "profile.txt")
    own, inclusive, total = aggregate(raw)
    rows_own = [[name, f"{100 * n / total:.1f} %"] for name, n in own.most_common(args.top)]
    rows_incl = [[name, f"{100 * n / total:.1f} %"] for name, n in inclusive.most_common(args.top + 12)
                 if not name.endswith((":run", ":_run_once", ":<module>", ":run_forever", ":_bootstrap",
                                       ":_bootstrap_inner", ":_worker", ":main", ":_run_module_as_main",
                                       ":_run_code"))][:args.top]
    body = (f"py-spy at 200 Hz on the daemon (all threads) while it delivers {spans} spans of the seeded fleet "
            "to `kafka`, `clickhouse` (the chDB-backed test endpoint) and `otlp` (a sink daemon) from one "
            f"pipeline, {total} samples.\n\nTop self time:\n\n" + table(["function", "self"], rows_own) +
            "\n\nTop inclusive time:\n\n" + table(["function", "inclusive"], rows_incl))
    write_section("profile: full fan-out", "python -m benchmarks.profile_pipeline", body)
    print(body)


if __name__ == "__main__":
    main()
